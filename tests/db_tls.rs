//! TLS to PostgreSQL with rustls, against a private cluster with `ssl=on`
//! and a CA + server certificate generated here.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::certs::{self, TestPki};
use support::cluster::ServerTls;
use support::TempCluster;
use usersvc::db::{connect, DbError, DbPool};

struct TlsCluster {
    cluster: TempCluster,
    ca_file: PathBuf,
    wrong_ca_file: PathBuf,
}

/// A cluster whose certificate is valid for `localhost` and `127.0.0.1`
/// (the server also listens on 127.0.0.2, a name the certificate lacks).
fn tls_cluster() -> TlsCluster {
    let pki: TestPki = certs::generate(&["localhost", "127.0.0.1"]);
    let other: TestPki = certs::generate(&["localhost", "127.0.0.1"]);
    let cluster = TempCluster::with_tls(Some(ServerTls {
        cert_pem: pki.leaf_pem.clone(),
        key_pem: pki.leaf_key_pem.clone(),
    }));
    let ca_file = cluster.dir().join("ca.pem");
    let wrong_ca_file = cluster.dir().join("wrong-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("write ca");
    std::fs::write(&wrong_ca_file, &other.ca_pem).expect("write wrong ca");
    TlsCluster {
        cluster,
        ca_file,
        wrong_ca_file,
    }
}

/// `ssl` from `pg_stat_ssl` for this connection, via a direct client.
fn ssl_in_use(url: &str) -> Result<bool, DbError> {
    let mut client = connect(url, Duration::from_secs(5))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(DbError::Query)?;
    Ok(row.get(0))
}

#[test]
fn disable_is_plain_and_require_encrypts_without_verifying() {
    let t = tls_cluster();
    assert!(!ssl_in_use(&t.cluster.url_with("127.0.0.1", "sslmode=disable")).expect("plain"));
    // require: no CA given, the self-made certificate is accepted unverified.
    assert!(ssl_in_use(&t.cluster.url_with("127.0.0.1", "sslmode=require")).expect("require"));
    // prefer (the default) also encrypts when the server offers TLS.
    assert!(ssl_in_use(&t.cluster.url()).expect("prefer"));

    // The pool speaks TLS too, channel binding included.
    let url = t
        .cluster
        .url_with("127.0.0.1", "sslmode=require&channel_binding=prefer");
    let pool = DbPool::build(&url, &support::settings(2)).expect("pool");
    let ssl: bool = pool
        .read(|db| {
            db.query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .map(|r| r.get(0))
        })
        .expect("pooled query");
    assert!(ssl);
}

#[test]
fn verify_full_accepts_the_right_ca_and_rejects_a_wrong_one_clearly() {
    let t = tls_cluster();
    let ca = t.ca_file.display().to_string();
    for host in ["127.0.0.1", "localhost"] {
        let url = t
            .cluster
            .url_with(host, &format!("sslmode=verify-full&sslrootcert={ca}"));
        assert!(
            ssl_in_use(&url).expect("verify-full with the right CA"),
            "{host}"
        );
    }

    let wrong = t.wrong_ca_file.display().to_string();
    let url = t.cluster.url_with(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={wrong}"),
    );
    let err = ssl_in_use(&url).expect_err("wrong CA");
    let msg = err.to_string();
    assert!(matches!(err, DbError::Unavailable(_)), "{msg}");
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(msg.contains("UnknownIssuer"), "{msg}");

    // No CA file: the built-in web roots do not know a private CA either.
    let url = t.cluster.url_with("127.0.0.1", "sslmode=verify-full");
    let msg = ssl_in_use(&url).expect_err("not a public CA").to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
}

#[test]
fn verify_ca_skips_the_host_name_and_verify_full_checks_it() {
    let t = tls_cluster();
    let ca = t.ca_file.display().to_string();
    // 127.0.0.2 reaches the same server but is not in the certificate.
    let verify_ca = t
        .cluster
        .url_with("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={ca}"));
    assert!(ssl_in_use(&verify_ca).expect("chain is enough for verify-ca"));

    let verify_full = t.cluster.url_with(
        "127.0.0.2",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let msg = ssl_in_use(&verify_full)
        .expect_err("name mismatch")
        .to_string();
    assert!(msg.contains("not valid for name"), "{msg}");

    // verify-ca still rejects a chain it cannot verify.
    let wrong = t.wrong_ca_file.display().to_string();
    let url = t.cluster.url_with(
        "127.0.0.2",
        &format!("sslmode=verify-ca&sslrootcert={wrong}"),
    );
    let msg = ssl_in_use(&url).expect_err("wrong CA").to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");

    // As libpq: `require` with a CA file verifies the chain (verify-ca).
    let url = t
        .cluster
        .url_with("127.0.0.2", &format!("sslmode=require&sslrootcert={wrong}"));
    let msg = ssl_in_use(&url).expect_err("wrong CA").to_string();
    assert!(msg.contains("UnknownIssuer"), "{msg}");
    let url = t
        .cluster
        .url_with("127.0.0.2", &format!("sslmode=require&sslrootcert={ca}"));
    assert!(ssl_in_use(&url).expect("right CA"));
}
