//! The recipe loader (interpolation, step order, serving profiles): any bytes give a recipe or
//! an error with a location.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let opts = pinstack::recipe::LoadOptions {
        workspace: Some(std::path::PathBuf::from("/nonexistent/workspace")),
        caller_env: Default::default(),
    };
    let _ = pinstack::recipe::Recipe::parse(std::path::Path::new("recipe.yaml"), data, &opts);
});
