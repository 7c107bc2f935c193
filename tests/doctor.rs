//! `pinstack doctor` against fake host roots (etc, proc, sys, opt, dpkg) and stand-in programs.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

/// One reported check: id, level, detail, fix.
type Row = (String, String, String, Option<String>);

/// Something that breaks one check of a good host.
type Breaker = Box<dyn Fn(&Host)>;

/// A fake host: a root folder and a folder of stand-in programs.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// A host that passes every check it controls.
    fn good() -> Host {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        h.write(
            "root/etc/os-release",
            "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 24.04.4 LTS\"\n",
        );
        h.write("root/proc/sys/kernel/arch", "x86_64\n");
        h.write("root/proc/sys/kernel/osrelease", "6.17.0-29-generic\n");
        h.write(
            "root/proc/cmdline",
            "BOOT_IMAGE=/vmlinuz-6.17.0-29-generic root=UUID=x ro quiet xe.disable_display=1\n",
        );
        h.write(
            "root/proc/meminfo",
            "MemTotal:       263000000 kB\nSwapTotal:        8000000 kB\n",
        );
        h.write("root/sys/class/net/lo/operstate", "unknown\n");
        for i in 0..4 {
            h.card(i, "0x8086", "0xe223", "0", "32.0 GT/s PCIe", "16");
        }
        // An onboard adapter that drives the display.
        h.write("root/sys/bus/pci/devices/0000:00:02.0/vendor", "0x1a03\n");
        h.write("root/sys/bus/pci/devices/0000:00:02.0/device", "0x2000\n");
        h.write("root/sys/bus/pci/devices/0000:00:02.0/boot_vga", "1\n");
        h.write(
            "root/opt/intel/oneapi/compiler/2025.3/env/vars.sh",
            "# vars\n",
        );
        h.program(
            "root/opt/intel/oneapi/compiler/2025.3/bin/icpx",
            "echo 'Intel(R) oneAPI DPC++/C++ Compiler 2025.3.2 (2025.3.2.20260112)'",
        );
        h.write(
            "root/var/lib/dpkg/status",
            "Package: libze1\nStatus: install ok installed\nVersion: 1.28.2-1~24.04~ppa1\n\n",
        );
        // As xpu-smi prints a card: its UUID ends in the PCI ids, e223 again.
        let device_lines = (0..4)
            .map(|i| {
                format!(
                    "echo '| {i} | Device Name: Intel(R) Graphics [0xe223] |'\n\
                     echo '|   | Vendor Name: Intel(R) Corporation |'\n\
                     echo '|   | SOC UUID: 00000000-0000-000{i}-0000-0000e2238086 |'\n\
                     echo '|   | PCI BDF Address: 0000:0{i}:00.0 |'"
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        h.program("bin/xpu-smi", &device_lines);
        h.program(
            "bin/clinfo",
            &format!(
                "echo 'Platform #0: Intel(R) OpenCL Graphics'\n{}",
                (0..4)
                    .map(|i| format!("echo ' +-- Device #{i}: Intel(R) Graphics [0xe223]'"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        );
        h
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn program(&self, rel: &str, body: &str) {
        self.write(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn card(&self, i: usize, vendor: &str, device: &str, boot_vga: &str, speed: &str, width: &str) {
        let d = format!("root/sys/bus/pci/devices/0000:0{}:00.0", i + 3);
        self.write(&format!("{d}/vendor"), &format!("{vendor}\n"));
        self.write(&format!("{d}/device"), &format!("{device}\n"));
        self.write(&format!("{d}/boot_vga"), &format!("{boot_vga}\n"));
        self.write(&format!("{d}/current_link_speed"), &format!("{speed}\n"));
        self.write(&format!("{d}/max_link_speed"), "32.0 GT/s PCIe\n");
        self.write(&format!("{d}/current_link_width"), &format!("{width}\n"));
        self.write(&format!("{d}/max_link_width"), "16\n");
    }

    fn remove(&self, rel: &str) {
        let p = self.path(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    /// Runs doctor; returns (exit code, checks by id: list of (level, detail, fix)).
    fn doctor(&self, extra: &[&str]) -> (i32, Vec<Row>) {
        let path = format!("{}:/usr/bin:/bin", self.path("bin").display());
        let out = Command::cargo_bin("pinstack")
            .unwrap()
            .current_dir(self.dir.path())
            .env("PATH", path)
            .args(["--json", "doctor", "--root"])
            .arg(self.path("root"))
            .args(extra)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        let checks = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["level"].as_str().unwrap().to_owned(),
                    c["detail"].as_str().unwrap().to_owned(),
                    c["fix"].as_str().map(str::to_owned),
                )
            })
            .collect::<Vec<_>>();
        let any_fail = checks.iter().any(|c| c.1 == "fail");
        assert_eq!(v["ok"], Value::Bool(!any_fail));
        let code = out.status.code().unwrap();
        assert_eq!(
            code,
            if any_fail { 1 } else { 0 },
            "exit code follows the failures"
        );
        (code, checks)
    }

    fn level(&self, extra: &[&str], id: &str) -> String {
        let (_, checks) = self.doctor(extra);
        let levels: Vec<&str> = checks
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| c.1.as_str())
            .collect();
        assert!(!levels.is_empty(), "no check {id}");
        // The worst of the checks with this id (pcie has one per card).
        ["fail", "warn", "pass"]
            .into_iter()
            .find(|l| levels.contains(l))
            .unwrap()
            .to_owned()
    }
}

/// Checks whose result the fake host decides (disk depends on the real machine).
const CONTROLLED: [&str; 12] = [
    "os", "arch", "kernel", "gpus", "display", "cmdline", "pcie", "xpu-smi", "clinfo", "memory",
    "oneapi", "libze1",
];

#[test]
fn a_good_host_passes_every_check_it_controls() {
    let h = Host::good();
    let (_, checks) = h.doctor(&[]);
    for id in CONTROLLED {
        let mine: Vec<_> = checks.iter().filter(|c| c.0 == id).collect();
        assert!(!mine.is_empty(), "check {id} is reported");
        for c in mine {
            assert_eq!(c.1, "pass", "{id}: {}", c.2);
            assert!(c.3.is_none(), "a passing check has no fix");
        }
    }
    assert_eq!(
        checks.iter().filter(|c| c.0 == "pcie").count(),
        4,
        "one link check per card"
    );
    assert!(checks.iter().any(|c| c.0 == "disk"), "disk is checked");
    assert!(checks.iter().any(|c| c.0 == "iface" && c.1 == "pass"));
}

#[test]
fn each_check_fails_or_warns_with_a_fix() {
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "os",
            Box::new(|h| {
                h.write(
                    "root/etc/os-release",
                    "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian 12\"\n",
                )
            }),
            "fail",
        ),
        (
            "arch",
            Box::new(|h| h.write("root/proc/sys/kernel/arch", "aarch64\n")),
            "fail",
        ),
        (
            // Ubuntu 24.04's own kernel, before the HWE kernel's reboot.
            "kernel",
            Box::new(|h| h.write("root/proc/sys/kernel/osrelease", "6.8.0-88-generic\n")),
            "warn",
        ),
        (
            "gpus",
            Box::new(|h| {
                h.remove("root/sys/bus/pci/devices/0000:05:00.0");
                h.remove("root/sys/bus/pci/devices/0000:06:00.0");
            }),
            "fail",
        ),
        (
            "display",
            Box::new(|h| h.card(1, "0x8086", "0xe223", "1", "32.0 GT/s PCIe", "16")),
            "fail",
        ),
        (
            "cmdline",
            Box::new(|h| h.write("root/proc/cmdline", "ro quiet\n")),
            "fail",
        ),
        (
            "pcie",
            Box::new(|h| h.card(2, "0x8086", "0xe223", "0", "16.0 GT/s PCIe", "8")),
            "warn",
        ),
        (
            "xpu-smi",
            Box::new(|h| {
                h.program(
                    "bin/xpu-smi",
                    "echo 'Device Name: Intel(R) Graphics [0xe223]'",
                )
            }),
            "fail",
        ),
        ("xpu-smi", Box::new(|h| h.remove("bin/xpu-smi")), "warn"),
        (
            "clinfo",
            Box::new(|h| h.program("bin/clinfo", "exit 1")),
            "fail",
        ),
        (
            "memory",
            Box::new(|h| {
                h.write(
                    "root/proc/meminfo",
                    "MemTotal: 65000000 kB\nSwapTotal: 0 kB\n",
                )
            }),
            "warn",
        ),
        (
            // Below the stated minimum, swap does not count.
            "memory",
            Box::new(|h| {
                h.write(
                    "root/proc/meminfo",
                    "MemTotal: 8000000 kB\nSwapTotal: 200000000 kB\n",
                )
            }),
            "fail",
        ),
        (
            "oneapi",
            Box::new(|h| h.remove("root/opt/intel/oneapi/compiler/2025.3")),
            "warn",
        ),
        (
            "oneapi",
            Box::new(|h| {
                h.program(
                    "root/opt/intel/oneapi/compiler/2025.3/bin/icpx",
                    "echo 'Intel(R) oneAPI DPC++/C++ Compiler 2026.0.0'",
                )
            }),
            "fail",
        ),
        (
            "libze1",
            Box::new(|h| {
                h.write(
                    "root/var/lib/dpkg/status",
                    "Package: libze1\nStatus: hold ok installed\nVersion: 1.28.2-local1\n\n",
                )
            }),
            "warn",
        ),
        (
            "iface",
            Box::new(|h| h.remove("root/sys/class/net/lo")),
            "fail",
        ),
    ];
    for (id, break_it, want) in cases {
        let h = Host::good();
        break_it(&h);
        let (_, checks) = h.doctor(&[]);
        let worst = h.level(&[], id);
        assert_eq!(worst, want, "check {id}");
        let c = checks.iter().find(|c| c.0 == id && c.1 == want).unwrap();
        assert!(
            c.3.as_deref().is_some_and(|f| !f.is_empty()),
            "{id} names a fix"
        );
    }
}

#[test]
fn display_and_cmdline_only_warn_for_a_shorter_context() {
    let h = Host::good();
    h.card(0, "0x8086", "0xe223", "1", "32.0 GT/s PCIe", "16");
    h.write("root/proc/cmdline", "ro quiet\n");
    assert_eq!(h.level(&[], "display"), "fail");
    assert_eq!(h.level(&["--context", "24576"], "display"), "warn");
    assert_eq!(h.level(&["--context", "24576"], "cmdline"), "warn");
}

#[test]
fn human_output_lists_every_check_with_its_fix() {
    let h = Host::good();
    h.write("root/proc/cmdline", "ro quiet\n");
    let path = format!("{}:/usr/bin:/bin", h.path("bin").display());
    let out = Command::cargo_bin("pinstack")
        .unwrap()
        .current_dir(h.dir.path())
        .env("PATH", path)
        .args(["doctor", "--root"])
        .arg(h.path("root"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL  cmdline"), "{text}");
    assert!(text.contains("fix: add xe.disable_display=1"), "{text}");
    assert!(text.contains("pass  gpus"), "{text}");
    assert!(text.lines().last().unwrap().contains("checks:"), "{text}");
}

#[test]
fn cards_a_driver_names_are_counted_once_each() {
    // A driver that knows the card prints its name, not its PCI id; xpu-smi's SOC UUID line of
    // each card still ends in the ids.
    let h = Host::good();
    let cards = (0..4)
        .map(|i| {
            format!(
                "echo '| {i} | Device Name: Intel(R) Arc(TM) Pro B70 Graphics |'\n\
                 echo '|   | SOC UUID: 00000000-0000-000{i}-0000-0000e2238086 |'"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    h.program("bin/xpu-smi", &cards);
    h.program(
        "bin/clinfo",
        &(0..4)
            .map(|i| format!("echo ' +-- Device #{i}: Intel(R) Arc(TM) Pro B70 Graphics'"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (_, checks) = h.doctor(&[]);
    for id in ["xpu-smi", "clinfo"] {
        let c = checks.iter().find(|c| c.0 == id).unwrap();
        assert_eq!(c.1, "pass", "{id}: {}", c.2);
        assert!(c.2.contains("sees 4 B70"), "{id}: {}", c.2);
    }
    // Three cards named, the fourth only by its UUID line: the UUIDs say four.
    h.program(
        "bin/xpu-smi",
        &cards.replacen("Intel(R) Arc(TM) Pro B70 Graphics", "Intel(R) Graphics", 1),
    );
    let (_, checks) = h.doctor(&[]);
    assert_eq!(checks.iter().find(|c| c.0 == "xpu-smi").unwrap().1, "pass");
}
