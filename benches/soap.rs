//! The SOAP translation: building a HentPersoner request and parsing its answer for 1, 100 and
//! 1,000 persons (the facade's side), and writing the answer (the simulator's side). With
//! WS-Security: signing a request and opening (decrypting and verifying) its answer (the
//! facade), verifying a request and sealing (signing and encrypting) its answer (the simulator).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic where a request path may not

// The allocator the portvakt binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portvakt::soap::model::{Header, Informasjonsbehov, Request, Response};
use portvakt::soap::{read, write};
use portvakt::wssec::{Certificate, ClientSecurity, Credentials, Mode, ServerSecurity, Window};

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
        let answer = write::response(&Response::HentPersoner(register.hent_personer(&ids, &behov, now)), None)
            .expect("an answer");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("build_request", n), &request, |b, request| {
            b.iter(|| write::request(&Header::default(), request, None).expect("a request"))
        });
        group.bench_with_input(BenchmarkId::new("parse_response", n), &answer, |b, answer| {
            b.iter(|| read::response(answer).expect("readable").expect("not a fault"))
        });
        group.bench_with_input(BenchmarkId::new("write_response", n), &ids, |b, ids| {
            b.iter(|| {
                write::response(&Response::HentPersoner(register.hent_personer(ids, &behov, now)), None)
                    .expect("an answer")
            })
        });
    }
    group.finish();
}

fn dev(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev").join(name)
}

fn ws_security(c: &mut Criterion) {
    let register = register();
    let now = chrono::Utc::now();
    let behov = Informasjonsbehov::ALL.to_vec();
    let window = Window { max_ttl: std::time::Duration::from_secs(1800), skew: std::time::Duration::from_secs(300) };
    let client = ClientSecurity::new(
        Credentials::load(&dev("krr-facade.cert.pem"), &dev("krr-facade.key.pem")).expect("the facade's credentials"),
        Certificate::load(&dev("oppslag-server.cert.pem")).expect("the service's certificate"),
        window,
    );
    let server = ServerSecurity::new(
        Mode::Required,
        Credentials::load(&dev("oppslag-server.cert.pem"), &dev("oppslag-server.key.pem")).expect("credentials"),
        portvakt::pki::TrustAnchors::load(&[dev("test-ca.cert.pem")]).expect("the test CA"),
        window,
    );
    let mut group = c.benchmark_group("wssec");
    for n in [1usize, 1000] {
        let ids: Vec<String> = register.entries().iter().take(n).map(|e| e.personidentifikator.clone()).collect();
        let request = Request::HentPersoner { informasjonsbehov: behov.clone(), personidentifikatorer: ids.clone() };
        let response = Response::HentPersoner(register.hent_personer(&ids, &behov, now.fixed_offset()));
        let signed = client.sign(&Header::default(), &request, now).expect("a signed request");
        let verified = server.verify(&signed.xml, now).expect("a verified request");
        let sealed = server.seal(&response, &verified, now).expect("a sealed answer");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("sign_request", n), &request, |b, request| {
            b.iter(|| client.sign(&Header::default(), request, now).expect("a signed request"))
        });
        group.bench_with_input(BenchmarkId::new("open_answer", n), &sealed, |b, sealed| {
            b.iter(|| {
                let body = client.open(sealed, &signed, now).expect("an answer that verifies");
                read::response(&body).expect("readable").expect("not a fault")
            })
        });
        // The simulator takes a signed request once: each iteration verifies a fresh one (signed
        // outside the measurement).
        group.bench_with_input(BenchmarkId::new("verify_request", n), &request, |b, request| {
            b.iter_batched(
                || client.sign(&Header::default(), request, now).expect("a signed request"),
                |signed| server.verify(&signed.xml, now).expect("a verified request"),
                criterion::BatchSize::SmallInput,
            )
        });
        group.bench_with_input(BenchmarkId::new("seal_answer", n), &response, |b, response| {
            b.iter(|| server.seal(response, &verified, now).expect("a sealed answer"))
        });
    }
    group.finish();
}

criterion_group!(benches, soap, ws_security);
criterion_main!(benches);
