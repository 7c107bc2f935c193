//! The pins.yaml loader: any bytes give pins or an error with a location.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pinstack::pins::Pins::parse(std::path::Path::new("pins.yaml"), data);
});
