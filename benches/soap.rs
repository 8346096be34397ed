//! The SOAP translation: building a HentPersoner request and parsing its answer for 1, 100 and
//! 1,000 persons (the facade's side), and writing the answer (the simulator's side).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

// The allocator the portvakt binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portvakt::soap::model::{Header, Informasjonsbehov, Request, Response};
use portvakt::soap::{read, write};

fn register() -> portvakt::oppslag::register::Register {
    let file = portvakt::oppslag::generate::generate(1000, 7).expect("a register");
    portvakt::oppslag::register::Register::new(file).expect("a valid register")
}

fn soap(c: &mut Criterion) {
    let register = register();
    let now = chrono::Utc::now().fixed_offset();
    let behov = Informasjonsbehov::ALL.to_vec();
    let mut group = c.benchmark_group("soap");
    for n in [1usize, 100, 1000] {
        let ids: Vec<String> = register.entries().iter().take(n).map(|e| e.personidentifikator.clone()).collect();
        let request = Request::HentPersoner { informasjonsbehov: behov.clone(), personidentifikatorer: ids.clone() };
        let answer =
            write::response(&Response::HentPersoner(register.hent_personer(&ids, &behov, now))).expect("an answer");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("build_request", n), &request, |b, request| {
            b.iter(|| write::request(&Header::default(), request).expect("a request"))
        });
        group.bench_with_input(BenchmarkId::new("parse_response", n), &answer, |b, answer| {
            b.iter(|| read::response(answer).expect("readable").expect("not a fault"))
        });
        group.bench_with_input(BenchmarkId::new("write_response", n), &ids, |b, ids| {
            b.iter(|| {
                write::response(&Response::HentPersoner(register.hent_personer(ids, &behov, now))).expect("an answer")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, soap);
criterion_main!(benches);
