//! Register decoding and `GetText` rendering: arbitrary register words
//! decoded by every register of every profile (`profile::ALL`).
//!
//! Checks, for each register:
//! - `decode` and `decode_in_block` never panic and agree (the same words
//!   placed at an offset inside a block decode the same);
//! - a numeric value is finite, and too few words decode as invalid;
//! - `write_text` into a `heapless::String` always succeeds (256 bytes is
//!   room for any value, enum text or unit) and renders no control
//!   character the value's own text does not hold;
//! - `encode` of the decoded value (and of an arbitrary number) never
//!   panics and, when it succeeds, writes exactly `word_count` words.
#![no_main]

use arbitrary::Arbitrary;
use dmc_core::profile::ALL;
use dmc_core::register::{write_number, RegisterDef};
use dmc_core::value::{TextFormat, Value};
use heapless::String;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Where the register sits inside a simulated block read.
    offset: u8,
    /// An arbitrary engineering value to encode.
    number: f64,
    /// Decimals for a bare-number rendering.
    decimals: u8,
    /// The register's words, big-endian as on the wire (the rest of the
    /// input; up to 40 words are used, the longest text is 32).
    words: &'a [u8],
}

fn control_chars(s: &str) -> usize {
    s.chars().filter(|c| c.is_control()).count()
}

fn check_register(r: &RegisterDef, words: &[u16], offset: u16, number: f64) {
    let value = r.decode(words);
    if words.len() < usize::from(r.word_count()) {
        assert_eq!(value, Value::Invalid, "{}: decoded from too few words", r.name);
    }
    if let Value::Float(f) = value {
        assert!(f.is_finite(), "{}: non-finite value {f}", r.name);
    }
    let _ = value.dbus_type();

    // The same words inside a block that starts `offset` registers earlier.
    if let Some(block_start) = r.address.checked_sub(offset) {
        let mut block = vec![0xDEAD; usize::from(offset)];
        block.extend_from_slice(words);
        assert_eq!(r.decode_in_block(block_start, &block), value, "{}: block decode differs", r.name);
    }
    if let Some(after) = r.address.checked_add(1) {
        assert_eq!(r.decode_in_block(after, words), Value::Invalid, "{}: block starts after it", r.name);
    }

    let mut text: String<256> = String::new();
    r.write_text(&value, &mut text).unwrap_or_else(|_| panic!("{}: {value:?} does not render", r.name));
    let own = value.as_str().map_or(0, control_chars);
    assert!(control_chars(&text) <= own, "{}: control characters in {text:?} for {value:?}", r.name);

    let mut out = [0u16; 64];
    if let Some(v) = value.as_f64() {
        if let Ok(n) = r.encode(v, &mut out) {
            assert_eq!(n, usize::from(r.word_count()));
        }
    }
    if let Ok(n) = r.encode(number, &mut out) {
        assert_eq!(n, usize::from(r.word_count()));
    }
    let _ = r.encode_write(number);
}

fuzz_target!(|input: Input<'_>| {
    let words: Vec<u16> =
        input.words.chunks_exact(2).take(40).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    let words = &words[..];
    let offset = u16::from(input.offset % 128);
    for profile in ALL.iter() {
        for r in profile.registers {
            check_register(r, words, offset, input.number);
        }
    }
    // A bare number in any format renders, without control characters.
    let mut text: String<256> = String::new();
    write_number(input.number, &TextFormat::new("W", input.decimals), &mut text).expect("a number renders");
    assert_eq!(control_chars(&text), 0, "{text:?}");
    assert!(!text.is_empty());
});
