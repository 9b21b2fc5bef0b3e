//! Invalid flags stop `duostack server` before anything is written, with a message naming
//! the flag and the value.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duostack"));
    cmd.arg("server").arg("--data-dir").arg(&data);
    if !args.iter().any(|a| a.starts_with("--listen")) {
        cmd.arg("--listen=127.0.0.1:0");
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    )
}

#[test]
fn invalid_flags_fail_before_writing_anything() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--service-cluster-ip-range=10.0.0.0/16,10.1.0.0/16"],
            r#"invalid value "10.0.0.0/16,10.1.0.0/16" for flag --service-cluster-ip-range: --service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family"#,
        ),
        (
            &["--service-cluster-ip-range=10.0.0.0/8"],
            "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12",
        ),
        (
            &["--service-cluster-ip-range=nonsense"],
            r#"invalid value "nonsense" for flag --service-cluster-ip-range: service-cluster-ip-range[0] is not a valid cidr"#,
        ),
        (
            &["--cluster-cidr=10.244.0.0/16,10.245.0.0/16"],
            r#"invalid value "10.244.0.0/16,10.245.0.0/16" for flag --cluster-cidr: len of ClusterCIDRs==2 and they are not configured as dual stack"#,
        ),
        (
            &["--node-cidr-mask-size=24"],
            r#"invalid value "24" for flag --node-cidr-mask-size: usage of --node-cidr-mask-size is not allowed with dual-stack clusters"#,
        ),
        (
            &[
                "--cluster-cidr=10.244.0.0/16",
                "--node-cidr-mask-size-ipv6=64",
            ],
            "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster",
        ),
        (
            &["--service-node-port-range=32767-30000"],
            r#"invalid value "32767-30000" for flag --service-node-port-range"#,
        ),
        (
            &["--store=etcd"],
            "flag --etcd-servers must be set when --store=etcd",
        ),
        (
            &["--store=etcd", "--etcd-servers=localhost"],
            r#"invalid value "localhost" for flag --etcd-servers"#,
        ),
        (
            &["--listen=nowhere"],
            "invalid value 'nowhere' for '--listen <LISTEN>'",
        ),
        (
            &["--node-cidr-mask-size-ipv4=x"],
            "invalid value 'x' for '--node-cidr-mask-size-ipv4",
        ),
    ];
    for (args, want) in cases {
        let (ok, stderr, dir) = run(args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(want), "{args:?}: stderr was:\n{stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{args:?} created the data directory before failing"
        );
    }
}

#[test]
fn every_cluster_layout_is_accepted() {
    for (svc, cluster) in [
        ("10.96.0.0/16", "10.244.0.0/16"),
        ("fd00:10:96::/112", "fd00:10:244::/56"),
        (
            "10.96.0.0/16,fd00:10:96::/112",
            "10.244.0.0/16,fd00:10:244::/56",
        ),
        (
            "fd00:10:96::/112,10.96.0.0/16",
            "fd00:10:244::/56,10.244.0.0/16",
        ),
        ("fd00:10:96::/64", "fd00:10::/32"),
    ] {
        let c = duostack_testkit::Cluster::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_duostack")),
            &[
                &format!("--service-cluster-ip-range={svc}"),
                &format!("--cluster-cidr={cluster}"),
            ],
        );
        assert!(c.is_ok(), "{svc} / {cluster}: {:?}", c.err());
    }
}
