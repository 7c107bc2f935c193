//! `pinstack doctor`: is this host ready for the B70 stack? Each check passes, warns or fails,
//! with the fix in one line. It reads `/etc`, `/proc`, `/sys`, `/var/lib/dpkg` and `/opt` under
//! a root folder (`/` on a real host), and runs `xpu-smi` and `clinfo` from `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    /// Stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: &'static str,
    pub level: Level,
    pub detail: String,
    /// The fix, in one line, when the check did not pass.
    pub fix: Option<String>,
}

/// What doctor looks at.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The host's root folder.
    pub root: PathBuf,
    /// Where the workspace lives (its free space is checked).
    pub workspace: PathBuf,
    /// The serving context length; 32768 needs the display off the B70s.
    pub context: u32,
}

/// PCI vendor and device id of the Arc Pro B70.
pub const B70_VENDOR: &str = "0x8086";
pub const B70_DEVICE: &str = "0xe223";
/// The number of cards the stack is tensor-parallel over.
pub const CARDS: usize = 4;
/// Free disk the bring-up needs (GB, 10^9 bytes): model 113, hub cache during download 140,
/// source and build trees 80, compile caches 60, temporary build swap 160.
pub const DISK_BUDGET_GB: u64 = 113 + 140 + 80 + 60 + 160;
/// The same without the build swap (when memory plus swap already covers the build).
pub const DISK_BUDGET_NO_SWAP_GB: u64 = DISK_BUDGET_GB - 160;
/// Memory plus swap the native build needs: one compiler process of vllm-xpu-kernels passes
/// 120 GB of resident memory.
pub const BUILD_MEMORY_GIB: u64 = 128;
/// The memory the stack states as its minimum (GB, 10^9 bytes).
pub const MIN_MEMORY_GB: u64 = 16;
/// The oneAPI compiler the SYCL builds need (2026.0 breaks them).
pub const ONEAPI_DIR: &str = "opt/intel/oneapi/compiler/2025.3";

/// Runs every check.
pub fn run(opts: &DoctorOptions) -> Vec<Check> {
    let cards = b70_cards(&opts.root);
    let mut checks = vec![
        os(&opts.root),
        arch(&opts.root),
        kernel(&opts.root),
        gpus(&cards),
        display(&cards, opts.context),
        cmdline(&opts.root, opts.context),
    ];
    checks.extend(pcie(&cards));
    checks.push(program_devices(
        "xpu-smi",
        &["discovery"],
        "xpu-smi discovery",
    ));
    checks.push(program_devices("clinfo", &["-l"], "clinfo -l"));
    checks.push(disk(&opts.workspace));
    checks.push(memory(&opts.root));
    checks.push(oneapi(&opts.root));
    checks.push(libze(&opts.root));
    checks.push(loopback(&opts.root));
    checks
}

fn check(id: &'static str, level: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        id,
        level,
        detail: detail.into(),
        fix: if level == Level::Pass {
            None
        } else {
            fix.map(str::to_owned)
        },
    }
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(root.join(path)).ok()
}

fn os(root: &Path) -> Check {
    let fix = Some("install Ubuntu 24.04 LTS (the stack was validated on 24.04.4)");
    let Some(text) = read(root, "etc/os-release") else {
        return check("os", Level::Fail, "no /etc/os-release", fix);
    };
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let pretty = field("PRETTY_NAME");
    if field("ID") == "ubuntu" && field("VERSION_ID") == "24.04" {
        check("os", Level::Pass, pretty, None)
    } else {
        check(
            "os",
            Level::Fail,
            format!("{pretty}: not Ubuntu 24.04"),
            fix,
        )
    }
}

fn arch(root: &Path) -> Check {
    let arch = read(root, "proc/sys/kernel/arch")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let level = if arch == "x86_64" {
        Level::Pass
    } else {
        Level::Fail
    };
    check(
        "arch",
        level,
        arch,
        Some("use an x86_64 host: the XPU wheels are built for it"),
    )
}

/// The kernel the lab's hosts ran after the system packages' reboot: Ubuntu 24.04's HWE kernel
/// (6.17.0-29-generic on the 110 tok/s host), whose xe driver drives the B70s.
pub const HWE_KERNEL: (u32, u32) = (6, 17);

fn kernel(root: &Path) -> Check {
    let release = read(root, "proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().flatten(), numbers.next().flatten());
    let level = match version {
        (Some(major), Some(minor)) if (major, minor) >= HWE_KERNEL => Level::Pass,
        // Before the system packages and their reboot: not yet a failure.
        _ => Level::Warn,
    };
    check(
        "kernel",
        level,
        format!(
            "running kernel {}; the lab's hosts ran the HWE kernel, {}.{} or later",
            if release.is_empty() {
                "unknown"
            } else {
                &release
            },
            HWE_KERNEL.0,
            HWE_KERNEL.1
        ),
        Some("the recipe's system-packages step installs linux-generic-hwe-24.04: reboot into it"),
    )
}

/// A B70 on the PCI bus.
#[derive(Debug, Clone)]
struct Card {
    address: String,
    dir: PathBuf,
}

fn b70_cards(root: &Path) -> Vec<Card> {
    let base = root.join("sys/bus/pci/devices");
    let Ok(entries) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut cards: Vec<Card> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let id = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .ok()
                    .map(|s| s.trim().to_lowercase())
            };
            (id("vendor")?.as_str() == B70_VENDOR && id("device")?.as_str() == B70_DEVICE).then(
                || Card {
                    address: e.file_name().to_string_lossy().into_owned(),
                    dir,
                },
            )
        })
        .collect();
    cards.sort_by(|a, b| a.address.cmp(&b.address));
    cards
}

fn gpus(cards: &[Card]) -> Check {
    let list: Vec<&str> = cards.iter().map(|c| c.address.as_str()).collect();
    let detail = format!(
        "{} Arc Pro B70 (8086:e223) on PCIe: {}",
        cards.len(),
        list.join(", ")
    );
    let level = if cards.len() == CARDS {
        Level::Pass
    } else {
        Level::Fail
    };
    check(
        "gpus",
        level,
        detail,
        Some("seat four Arc Pro B70 cards; `lspci -nn | grep e223` must list four"),
    )
}

fn display(cards: &[Card], context: u32) -> Check {
    let on: Vec<&str> = cards
        .iter()
        .filter(|c| std::fs::read_to_string(c.dir.join("boot_vga")).is_ok_and(|s| s.trim() == "1"))
        .map(|c| c.address.as_str())
        .collect();
    let fix = Some(
        "move the console to the onboard or BMC adapter (firmware: primary display) so no B70 drives a display",
    );
    if cards.is_empty() {
        return check(
            "display",
            Level::Warn,
            "no B70 found, so which adapter drives the display is unknown",
            Some("seat the cards first (see gpus)"),
        );
    }
    if on.is_empty() {
        check(
            "display",
            Level::Pass,
            "no B70 drives the boot display (boot_vga 0)",
            None,
        )
    } else {
        let level = display_level(context);
        check(
            "display",
            level,
            format!(
                "{} drives the boot display: a {context}-token context does not fit beside it \
                 (24576 is the practical maximum)",
                on.join(", ")
            ),
            fix,
        )
    }
}

/// A display on a B70 rules out a context above 24576 tokens; below, it only costs headroom.
fn display_level(context: u32) -> Level {
    if context > 24576 {
        Level::Fail
    } else {
        Level::Warn
    }
}

fn cmdline(root: &Path, context: u32) -> Check {
    let line = read(root, "proc/cmdline").unwrap_or_default();
    let fix = Some(
        "add xe.disable_display=1 to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, run update-grub, reboot",
    );
    if line.split_whitespace().any(|w| w == "xe.disable_display=1") {
        check(
            "cmdline",
            Level::Pass,
            "xe.disable_display=1 is on the kernel command line",
            None,
        )
    } else {
        let level = display_level(context);
        check(
            "cmdline",
            level,
            format!("xe.disable_display=1 is missing: needed for a {context}-token context"),
            fix,
        )
    }
}

fn pcie(cards: &[Card]) -> Vec<Check> {
    cards
        .iter()
        .map(|c| {
            let get = |f: &str| {
                std::fs::read_to_string(c.dir.join(f))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default()
            };
            let (speed, max_speed) = (get("current_link_speed"), get("max_link_speed"));
            let (width, max_width) = (get("current_link_width"), get("max_link_width"));
            let gts = |s: &str| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
            };
            let w = |s: &str| s.parse::<u32>().ok();
            let slow = matches!((gts(&speed), gts(&max_speed)), (Some(a), Some(b)) if a < b)
                || matches!((w(&width), w(&max_width)), (Some(a), Some(b)) if a < b);
            let detail = format!(
                "{}: {speed} x{width} (card supports {max_speed} x{max_width})",
                c.address
            );
            check(
                "pcie",
                if slow { Level::Warn } else { Level::Pass },
                detail,
                Some(
                    "move the card to a slot wired at its full speed and width: tensor parallelism \
                     over four cards exchanges activations over PCIe for every decoded token",
                ),
            )
        })
        .collect()
}

fn program_devices(program: &'static str, args: &[&str], shown: &str) -> Check {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let fix_missing = "install the GPU runtime (the recipe's system-packages step), then reboot";
    let Ok(out) = out else {
        return check(
            program,
            Level::Warn,
            format!("{program} is not installed yet"),
            Some(fix_missing),
        );
    };
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    // One line names each device: `Device Name: ...` from xpu-smi, `Device #0: ...` from
    // clinfo, as `Intel(R) Graphics [0xe223]` (a driver that does not know the card's name
    // yet) or `Intel(R) Arc(TM) Pro B70 Graphics`. xpu-smi's `SOC UUID` line of each card ends
    // in the PCI ids (`...e2238086`): counted apart, never as a second card.
    let names = text
        .lines()
        .filter(|l| l.contains("device name") || l.contains("device #"))
        .filter(|l| l.contains("e223") || l.contains("pro b70"))
        .count();
    let uuids = text
        .lines()
        .filter(|l| l.contains("uuid") && l.trim_end_matches([' ', '|']).ends_with("e2238086"))
        .count();
    let seen = names.max(uuids);
    let level = if out.status.success() && seen == CARDS {
        Level::Pass
    } else {
        Level::Fail
    };
    check(
        program,
        level,
        format!("`{shown}` sees {seen} B70 device(s)"),
        Some(
            "the driver does not see every card: reboot after installing the GPU runtime; check `dmesg | grep -i xe`",
        ),
    )
}

fn disk(workspace: &Path) -> Check {
    let mut at = if workspace.is_absolute() {
        workspace.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(workspace)
    };
    while !at.exists() {
        if !at.pop() {
            break;
        }
    }
    let Ok(stat) = rustix::fs::statvfs(&at) else {
        return check(
            "disk",
            Level::Warn,
            format!("cannot read free space at {}", at.display()),
            Some("check that the workspace's disk is mounted"),
        );
    };
    let free_gb = stat.f_bavail.saturating_mul(stat.f_frsize) / 1_000_000_000;
    let level = if free_gb >= DISK_BUDGET_GB {
        Level::Pass
    } else if free_gb >= DISK_BUDGET_NO_SWAP_GB {
        Level::Warn
    } else {
        Level::Fail
    };
    check(
        "disk",
        level,
        format!(
            "{free_gb} GB free at {}; the bring-up needs {DISK_BUDGET_GB} GB ({DISK_BUDGET_NO_SWAP_GB} GB without the build swap)",
            at.display()
        ),
        Some(
            "put the workspace on a disk with more free space (at least a 512 GB SSD): --workspace DIR",
        ),
    )
}

fn memory(root: &Path) -> Check {
    let text = read(root, "proc/meminfo").unwrap_or_default();
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (mem, swap) = (kb("MemTotal:"), kb("SwapTotal:"));
    let total_gib = (mem + swap) / (1024 * 1024);
    // Below the stack's stated minimum no swap file makes up for it.
    // (A 16 GB machine reports a little less: the firmware and the kernel keep some; a tenth is
    // allowed for that.)
    if mem < MIN_MEMORY_GB * 1_000_000_000 / 1024 * 9 / 10 {
        return check(
            "memory",
            Level::Fail,
            format!(
                "{} GiB memory; the stack needs at least {MIN_MEMORY_GB} GB",
                mem / (1024 * 1024)
            ),
            Some("use a host with at least 16 GB of memory"),
        );
    }
    let level = if total_gib >= BUILD_MEMORY_GIB {
        Level::Pass
    } else {
        Level::Warn
    };
    check(
        "memory",
        level,
        format!(
            "{} GiB memory + {} GiB swap; the vllm-xpu-kernels build needs {BUILD_MEMORY_GIB} GiB (one compiler process passes 120 GB)",
            mem / (1024 * 1024),
            swap / (1024 * 1024)
        ),
        Some(
            "the recipe's build-swap step adds a temporary 160 GB swap file for the build (it needs the disk budget)",
        ),
    )
}

fn oneapi(root: &Path) -> Check {
    let dir = root.join(ONEAPI_DIR);
    let fix = Some(
        "install intel-oneapi-dpcpp-cpp-2025.3 (the recipe's system-packages step); never use setvars.sh, which selects 2026.0",
    );
    if !dir.join("env/vars.sh").is_file() {
        return check(
            "oneapi",
            Level::Warn,
            format!("/{ONEAPI_DIR} is not installed yet"),
            fix,
        );
    }
    let out = Command::new(dir.join("bin/icpx"))
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let version = out
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    if version.contains("2025.3") {
        check("oneapi", Level::Pass, version, None)
    } else {
        check(
            "oneapi",
            Level::Fail,
            format!("/{ONEAPI_DIR}/bin/icpx reports {version:?}, not 2025.3"),
            fix,
        )
    }
}

fn libze(root: &Path) -> Check {
    let status = read(root, "var/lib/dpkg/status").unwrap_or_default();
    let block = status
        .split("\n\n")
        .find(|b| b.lines().any(|l| l == "Package: libze1"));
    let Some(block) = block else {
        return check(
            "libze1",
            Level::Pass,
            "libze1 not installed yet (the GPU runtime brings it)",
            None,
        );
    };
    let field = |k: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let version = field("Version:");
    let held = field("Status:").starts_with("hold");
    if version.contains("local") || held {
        check(
            "libze1",
            Level::Warn,
            format!(
                "libze1 {version}{}: a local shim from an older route",
                if held { " (held)" } else { "" }
            ),
            Some("apt-mark unhold libze1 && apt-get install libze1=1.28.2-1~24.04~ppa1"),
        )
    } else {
        check("libze1", Level::Pass, format!("libze1 {version}"), None)
    }
}

fn loopback(root: &Path) -> Check {
    let level = if root.join("sys/class/net/lo").exists() {
        Level::Pass
    } else {
        Level::Fail
    };
    check(
        "iface",
        level,
        "the collectives' interface (FI_TCP_IFACE=lo) exists",
        Some("bring up the loopback interface: ip link set lo up"),
    )
}
