//! A few seconds of the load generator against an in-process mesh, so the tool
//! cannot rot. It asserts that every workload completed calls, not how fast.

#[test]
fn a_smoke_run_completes_every_workload_and_prints_the_table() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--smoke")
        .env("RUST_LOG", "error")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| echo (baseline) | 8 |",
        "| reserve roaming | 8 |",
        "| reserve parking | 8 |",
        "| reserve roaming | 1 |",
        "| reserve roaming (open loop) | 20/s offered |",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row} in\n{stdout}"));
        // The errors column is 0: every measured call succeeded.
        let errors = line.split('|').nth(8).map(str::trim);
        assert_eq!(errors, Some("0"), "{line}");
    }
    assert!(stdout.contains("event end to end"), "{stdout}");
    assert!(stdout.contains("not seen within 10 s: 0"), "{stdout}");
    assert!(stdout.contains("reserve errors: 0"), "{stdout}");
}
