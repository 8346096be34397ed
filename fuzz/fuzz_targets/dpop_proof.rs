#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| portvakt::fuzzing::dpop_proof(data));
