//! The bundle decoder: any bytes give a diff or an error, never a panic, a hang or a huge
//! allocation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = pinstack::bundle::decode(data);
});
