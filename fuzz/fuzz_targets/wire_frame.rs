//! Fuzzes the peer protocol's frame decoder: any bytes give a message, "need more", or an
//! error, never a panic or an allocation past the frame limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = mgha_sync::wire::decode_frame(data) {
        assert!(used <= data.len());
        let again = mgha_sync::wire::encode_frame(&msg).expect("a decoded message re-encodes");
        let (back, _) = mgha_sync::wire::decode_frame(&again).expect("decodes").expect("complete");
        assert_eq!(back, msg);
    }
});
