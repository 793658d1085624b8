//! Sets `cfg(footfall_cassandra)` when `FOOTFALL_TEST_CASSANDRA` names a Cassandra/ScyllaDB
//! node, so the tests that need one run then and are reported as ignored otherwise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(footfall_cassandra)");
    println!("cargo::rerun-if-env-changed=FOOTFALL_TEST_CASSANDRA");
    if std::env::var("FOOTFALL_TEST_CASSANDRA").is_ok_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=footfall_cassandra");
    }
}
