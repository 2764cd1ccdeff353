//! Wire-layer benchmarks: CRC-16 throughput over 256-byte frames, and the cost
//! of checking and parsing a 125-register FC03 RTU response.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmc_core::crc::crc16;
use dmc_core::pdu::{Request, Response, Words};
use dmc_core::rtu::{self, RtuFrame};
use std::hint::black_box;

fn bench_crc(c: &mut Criterion) {
    let frame: [u8; 256] = core::array::from_fn(|i| (i as u8).wrapping_mul(31));
    let mut group = c.benchmark_group("crc16");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("256-byte frame", |b| b.iter(|| crc16(black_box(&frame))));
    group.finish();
}

fn bench_parse(c: &mut Criterion) {
    let request = Request::ReadHoldingRegisters { address: 0, quantity: 125 };
    let values: [u16; 125] = core::array::from_fn(|i| i as u16 * 7);
    let mut adu = [0u8; rtu::MAX_ADU_LEN];
    let len = rtu::emit(1, &Response::ReadHoldingRegisters(Words::from_slice(&values)), &mut adu).unwrap();
    let adu = &adu[..len];
    c.bench_function("rtu fc03 125 regs: check + parse + sum", |b| {
        b.iter(|| {
            let frame = RtuFrame::new_checked(black_box(adu)).unwrap();
            frame.check_crc().unwrap();
            let response = Response::parse(&request, frame.pdu()).unwrap().unwrap();
            response.registers().unwrap().iter().fold(0u32, |sum, r| sum + u32::from(r))
        })
    });
}

criterion_group!(benches, bench_crc, bench_parse);
criterion_main!(benches);
