//! The diff parser and path placement: any text gives a patch or an error; an accepted patch
//! placed under a base folder still has only safe paths or is refused.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(patch) = pinstack::diff::Patch::parse(data.to_vec())
        && patch.check_paths().is_ok()
        && let Ok(placed) = patch.place_under("base/dir")
    {
        assert!(placed.check_paths().is_ok());
    }
});
