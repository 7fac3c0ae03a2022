//! Command-line options, QEMU style.
//!
//! QEMU spells long options with one dash (`-kernel`, `-machine`); clap
//! wants two. [`rewrite_qemu_args`] turns the known single-dash long options
//! into double-dash ones before clap sees them, leaving option *values*
//! alone (so `-append "-kernel"` stays a value). Everything clap accepts is
//! then checked and turned into a [`Config`] by [`parse`], which reports bad
//! input as one line (`Err(String)`), never a panic.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use kite_jit::Tier;

/// Long options QEMU spells with a single dash, and whether each takes a value.
const QEMU_LONG: &[(&str, bool)] = &[
    ("machine", true),
    ("kernel", true),
    ("bios", true),
    ("initrd", true),
    ("append", true),
    ("dtb", true),
    ("serial", true),
    ("smp", true),
    ("accel", true),
    ("enable-kvm", false),
    ("device", true),
    ("nographic", false),
    ("no-reboot", false),
    ("gdb", true),
    ("perfmap", false),
    ("help", false),
    ("version", false),
];

/// Short options that take a value (`-m 128M` as well as `-m128M`).
const SHORT_WITH_VALUE: &[&str] = &["-M", "-m", "-d", "-D"];

/// Short options clap knows (the ones with values may have them attached: `-m1G`).
const SHORTS: &[char] = &['M', 'm', 'd', 'D', 'h', 'V', 's', 'S'];

/// Rewrite `-kernel x` to `--kernel x` etc. for the known long options.
/// Values of options are never rewritten; `--` stops rewriting. A
/// single-dash word that is neither a known long option nor a known short
/// one (`-frobnicate`) is an error here, because clap would report it as a
/// cluster of short flags (`unexpected argument '-f'`).
pub fn rewrite_qemu_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    let mut value_next = false;
    let mut done = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || done || value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            done = true;
            out.push(arg);
            continue;
        }
        if SHORT_WITH_VALUE.contains(&s) {
            value_next = true;
            out.push(arg);
            continue;
        }
        let (dashes, body) = if let Some(b) = s.strip_prefix("--") {
            (2, b)
        } else if let Some(b) = s.strip_prefix('-') {
            (1, b)
        } else {
            (0, s)
        };
        let name = body.split('=').next().unwrap_or(body);
        match QEMU_LONG.iter().find(|(n, _)| *n == name) {
            Some((_, takes_value)) if dashes > 0 => {
                value_next = *takes_value && !body.contains('=');
                out.push(OsString::from(format!("--{body}")));
            }
            _ if dashes == 1 && !body.chars().next().is_some_and(|c| SHORTS.contains(&c)) => {
                return Err(format!("unknown option '{s}' (see --help)"));
            }
            _ => out.push(arg),
        }
    }
    Ok(out)
}

/// The raw clap view of the command line.
#[derive(Parser, Debug)]
#[command(
    name = "kite",
    version,
    // As in QEMU, a repeated option overrides the earlier one.
    args_override_self = true,
    about = "Kite: a fast full-system emulator (QEMU-compatible command line)",
    after_help = "Long options may be spelled with one dash, as in QEMU (-kernel, -machine, ...).\n\
                  Console: with stdin on a terminal, Ctrl-A X quits, Ctrl-A H shows the escape keys."
)]
struct RawArgs {
    /// Machine type (`-M help` lists them)
    #[arg(short = 'M', long = "machine", value_name = "MACHINE", default_value = "virt", allow_hyphen_values = true)]
    machine: String,
    /// Guest RAM size: 128M, 1G, or a plain number of MiB
    #[arg(short = 'm', value_name = "SIZE", allow_hyphen_values = true)]
    mem: Option<String>,
    /// Firmware: none, default, or a file (ELF or raw)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    bios: Option<String>,
    /// Kernel or bare-metal program (ELF or raw)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    kernel: Option<PathBuf>,
    /// Initial ramdisk (placed high in RAM, announced in the device tree)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    initrd: Option<PathBuf>,
    /// Kernel command line (`/chosen/bootargs`)
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    append: Option<String>,
    /// Device tree blob to pass instead of the generated one
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    dtb: Option<PathBuf>,
    /// No graphics: the serial port is on stdio (Kite's only mode)
    #[arg(long)]
    nographic: bool,
    /// Serial backend: stdio (default), mon:stdio or none
    #[arg(long, value_name = "DEV", allow_hyphen_values = true)]
    serial: Option<String>,
    /// Number of harts (1 to 8)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    smp: Option<String>,
    /// Log items, comma separated (`-d help` lists them)
    #[arg(short = 'd', value_name = "ITEMS", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    debug: Vec<String>,
    /// Write log output to FILE instead of stderr
    #[arg(short = 'D', value_name = "FILE", allow_hyphen_values = true)]
    logfile: Option<PathBuf>,
    /// Accelerator: tcg[,tier=interp|jit|tiered][,thresh=N][,first=baseline|interp][,thread=single|multi][,regions=on|off][,tb-cache=shared|private]
    #[arg(long, value_name = "ACCEL", allow_hyphen_values = true)]
    accel: Option<String>,
    /// Use KVM (the same as -accel kvm)
    #[arg(long = "enable-kvm")]
    enable_kvm: bool,
    /// Add a device: isa-debug-exit[,iobase=PORT,iosize=N] (microvm)
    #[arg(long, value_name = "DEV", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    device: Vec<String>,
    /// Exit instead of rebooting when the guest resets
    #[arg(long = "no-reboot")]
    no_reboot: bool,
    /// Wait for a gdb connection on DEV: tcp::PORT, tcp:HOST:PORT or unix:PATH
    #[arg(long, value_name = "DEV", allow_hyphen_values = true)]
    gdb: Option<String>,
    /// The same as -gdb tcp::1234
    #[arg(short = 's')]
    gdb_default: bool,
    /// Do not start the CPUs (wait for a debugger to continue)
    #[arg(short = 'S')]
    freeze: bool,
    /// Write /tmp/perf-<pid>.map so Linux perf can name translated code
    #[arg(long)]
    perfmap: bool,
}

/// Machines Kite knows, with a one-line description each.
pub const MACHINES: &[(&str, &str)] = &[
    ("virt", "RISC-V VirtIO board (QEMU virt memory map)"),
    ("microvm", "x86_64 microVM for direct kernel boot (needs KVM)"),
    ("spike", "RISC-V Spike board (HTIF console/exit, CLINT; bare-metal tests)"),
];

/// `-d` items and what they log.
pub const DEBUG_ITEMS: &[(&str, &str)] = &[
    ("in_asm", "show guest code as it is translated"),
    ("op", "show the IR of each translated block"),
    ("exec", "show each executed block"),
    ("cpu", "show CPU registers before each block"),
    ("int", "show interrupts and exceptions"),
    ("guest_errors", "log guest misbehaviour (bad device accesses, ...)"),
    ("stats", "print translator statistics at exit"),
];

/// Firmware choice (`-bios`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bios {
    None,
    Default,
    File(PathBuf),
}

/// Serial backend (`-serial`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serial {
    Stdio,
    None,
}

/// Which `-d` items are on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugItems {
    /// Log targets to enable at trace level (`in_asm`, `op`, ...).
    pub trace_targets: Vec<&'static str>,
    pub guest_errors: bool,
    pub stats: bool,
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub machine: &'static str,
    pub ram_size: u64,
    pub bios: Bios,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    /// `-dtb FILE`: passed to the guest instead of the generated device tree.
    pub dtb: Option<PathBuf>,
    /// `-machine dumpdtb=FILE`: write the device tree there and exit.
    pub dumpdtb: Option<PathBuf>,
    pub serial: Serial,
    pub smp: u32,
    pub debug: DebugItems,
    pub logfile: Option<PathBuf>,
    pub tier: Tier,
    /// `-accel tcg,thresh=N`: executions before a block is compiled (tiered).
    pub thresh: u32,
    /// `-accel tcg,first=baseline|interp`: how tiered mode runs cold blocks (the baseline
    /// compiler, the default, or the interpreter).
    pub baseline: bool,
    /// `-accel tcg,regions=on|off`: Cranelift compiles hot loops spanning several blocks
    /// as one function (on, the default) or every block alone.
    pub regions: bool,
    /// `-accel tcg,thread=single|multi`: one host thread per vCPU (multi, the default
    /// with several vCPUs) or all vCPUs in turns on one thread (deterministic).
    pub mttcg: Option<bool>,
    /// `-accel tcg,tb-cache=shared|private`: with a thread per vCPU, one TB cache for
    /// all (shared, the default) or one each (private: nothing shared, every vCPU
    /// translates for itself).
    pub shared_tbs: bool,
    /// Accelerators to try, in order (`-accel kvm:tcg`); empty = the default choice.
    pub accels: Vec<AccelKind>,
    /// `-device isa-debug-exit,iobase=..,iosize=..`: (iobase, iosize).
    pub debug_exit: Option<(u16, u16)>,
    pub no_reboot: bool,
    /// `-gdb DEV` / `-s`: where the gdb stub listens.
    pub gdb: Option<kite_gdb::Listen>,
    /// `-S`: the CPUs start stopped.
    pub freeze: bool,
    /// `-perfmap`: write a perf symbol map of translated code.
    pub perfmap: bool,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Run(Box<Config>),
    /// Print this text to stdout and exit 0 (`-M help`, `-d help`).
    Print(String),
}

/// Parse a QEMU size: a number with an optional K/M/G/T suffix (binary
/// units, case-insensitive); a plain number means MiB; `B` means bytes.
/// `size=` may prefix it.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid memory size '{s}' (examples: 128M, 1G, 256)");
    let t = s.trim();
    let t = t.strip_prefix("size=").unwrap_or(t);
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "" | "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    let v = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if v == 0 {
        return Err(format!("invalid memory size '{s}': must not be zero"));
    }
    Ok(v)
}

fn parse_machine(s: &str) -> Result<Option<&'static str>, String> {
    let mut parts = s.split(',').peekable();
    // `-machine dumpdtb=F` (options only) means the default machine.
    let first = parts.peek().copied().unwrap_or("");
    let name = if first.contains('=') && !first.starts_with("type=") { "virt" } else { parts.next().unwrap_or("") };
    let name = name.strip_prefix("type=").unwrap_or(name);
    if name == "help" || name == "?" {
        return Ok(None);
    }
    let Some((m, _)) = MACHINES.iter().find(|(m, _)| *m == name) else {
        return Err(format!("unknown machine '{name}' (use -M help to list machines)"));
    };
    if let Some(opt) = parts.find(|o| !matches!(o.split_once('='), Some(("dumpdtb", f)) if !f.is_empty())) {
        return Err(format!("unsupported machine option '{opt}' for '{m}'"));
    }
    Ok(Some(m))
}

fn parse_debug(items: &[String]) -> Result<Option<DebugItems>, String> {
    let mut d = DebugItems::default();
    for item in items.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()) {
        if item == "help" || item == "?" {
            return Ok(None);
        }
        match DEBUG_ITEMS.iter().find(|(n, _)| *n == item) {
            Some(("guest_errors", _)) => d.guest_errors = true,
            Some(("stats", _)) => d.stats = true,
            Some((n, _)) => {
                if !d.trace_targets.contains(n) {
                    d.trace_targets.push(n)
                }
            }
            None => return Err(format!("unknown -d item '{item}' (use -d help to list them)")),
        }
    }
    Ok(Some(d))
}

/// An accelerator named by `-accel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelKind {
    Kvm,
    Tcg,
}

/// The parsed `-accel` option.
#[derive(Debug)]
struct Accel {
    kinds: Vec<AccelKind>,
    tier: Tier,
    thresh: u32,
    multi: Option<bool>,
    baseline: bool,
    regions: bool,
    shared_tbs: bool,
}

impl Default for Accel {
    fn default() -> Self {
        Accel {
            kinds: Vec::new(),
            tier: Tier::Tiered,
            thresh: kite_jit::DEFAULT_THRESH,
            multi: None,
            baseline: true,
            regions: true,
            shared_tbs: true,
        }
    }
}

fn parse_accel(s: &str) -> Result<Accel, String> {
    let mut parts = s.split(',');
    let mut kinds = Vec::new();
    for name in parts.next().unwrap_or("").split(':') {
        let k = match name {
            "tcg" => AccelKind::Tcg,
            "kvm" => AccelKind::Kvm,
            "hvf" | "whpx" | "xen" | "nvmm" => return Err(format!("accelerator '{name}' is unsupported (kvm, tcg)")),
            other => return Err(format!("unknown accelerator '{other}' (kvm or tcg)")),
        };
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let mut tier = Tier::Tiered;
    let mut thresh = kite_jit::DEFAULT_THRESH;
    let mut multi = None;
    let mut baseline = true;
    let mut regions = true;
    let mut shared_tbs = true;
    for opt in parts {
        match opt.split_once('=') {
            Some(("tier", "interp")) => tier = Tier::Interp,
            Some(("tier", "jit")) => tier = Tier::Jit,
            Some(("tier", "tiered")) => tier = Tier::Tiered,
            Some(("tier", v)) => return Err(format!("invalid tcg tier '{v}' (interp, jit or tiered)")),
            Some(("thresh", v)) => {
                thresh = v.parse().map_err(|_| format!("invalid tcg thresh '{v}' (a count, 0..=1000000)"))?;
                if thresh > 1_000_000 {
                    return Err(format!("invalid tcg thresh '{v}' (a count, 0..=1000000)"));
                }
            }
            Some(("thread", "single")) => multi = Some(false),
            Some(("thread", "multi")) => multi = Some(true),
            Some(("thread", v)) => return Err(format!("invalid tcg thread '{v}' (single or multi)")),
            Some(("first", "baseline")) => baseline = true,
            Some(("first", "interp")) => baseline = false,
            Some(("first", v)) => return Err(format!("invalid tcg first tier '{v}' (baseline or interp)")),
            Some(("regions", "on")) => regions = true,
            Some(("regions", "off")) => regions = false,
            Some(("regions", v)) => return Err(format!("invalid tcg regions '{v}' (on or off)")),
            Some(("tb-cache", "shared")) => shared_tbs = true,
            Some(("tb-cache", "private")) => shared_tbs = false,
            Some(("tb-cache", v)) => return Err(format!("invalid tcg tb-cache '{v}' (shared or private)")),
            _ => {
                return Err(format!(
                    "unsupported accelerator option '{opt}' (tcg: tier=interp|jit|tiered, thresh=N, \
                     first=baseline|interp, thread=single|multi, regions=on|off, tb-cache=shared|private)"
                ))
            }
        }
    }
    Ok(Accel { kinds, tier, thresh, multi, baseline, regions, shared_tbs })
}

/// `-device` options: only `isa-debug-exit[,iobase=PORT][,iosize=N]` (QEMU's defaults 0x501, 2).
fn parse_devices(devs: &[String]) -> Result<Option<(u16, u16)>, String> {
    let mut exit = None;
    for d in devs {
        let mut parts = d.split(',');
        let name = parts.next().unwrap_or("");
        let name = name.strip_prefix("driver=").unwrap_or(name);
        if name != "isa-debug-exit" {
            return Err(format!("unsupported device '{name}' (supported: isa-debug-exit)"));
        }
        let (mut base, mut size) = (0x501u16, 2u16);
        for opt in parts {
            let num = |v: &str| {
                let r = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(h) => u16::from_str_radix(h, 16),
                    None => v.parse::<u16>(),
                };
                r.map_err(|_| format!("invalid value '{v}' in -device {d}"))
            };
            match opt.split_once('=') {
                Some(("iobase", v)) => base = num(v)?,
                Some(("iosize", v)) => size = num(v)?,
                _ => return Err(format!("unsupported isa-debug-exit option '{opt}' (iobase=, iosize=)")),
            }
        }
        if size == 0 || u32::from(base) + u32::from(size) > 0x1_0000 {
            return Err(format!("invalid isa-debug-exit port range {base:#x}+{size:#x}"));
        }
        exit = Some((base, size));
    }
    Ok(exit)
}

/// Most harts `-smp` accepts.
pub const MAX_SMP: u32 = 8;

fn parse_smp(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid -smp '{s}' (expected a number of harts)");
    let mut n = None;
    for (i, part) in s.split(',').enumerate() {
        let v = match part.split_once('=') {
            Some(("cpus", v)) => v,
            None if i == 0 => part,
            _ => return Err(bad()),
        };
        n = Some(v.parse::<u32>().map_err(|_| bad())?);
    }
    match n {
        Some(n) if (1..=MAX_SMP).contains(&n) => Ok(n),
        Some(n) if n > MAX_SMP => Err(format!("invalid -smp '{s}': at most {MAX_SMP} harts are supported")),
        _ => Err(bad()),
    }
}

fn parse_serial(s: &str) -> Result<Serial, String> {
    match s {
        "stdio" | "mon:stdio" => Ok(Serial::Stdio),
        "none" | "null" => Ok(Serial::None),
        _ => Err(format!("unsupported -serial backend '{s}' (stdio, mon:stdio or none)")),
    }
}

fn list(title: &str, rows: &[(&str, &str)]) -> String {
    let mut s = format!("{title}\n");
    for (n, d) in rows {
        s.push_str(&format!("{n:<14}{d}\n"));
    }
    s
}

impl RawArgs {
    fn check(self) -> Result<Action, String> {
        let Some(machine) = parse_machine(&self.machine)? else {
            return Ok(Action::Print(list("Supported machines are:", MACHINES)));
        };
        let Some(debug) = parse_debug(&self.debug)? else {
            return Ok(Action::Print(list("Log items (comma separated):", DEBUG_ITEMS)));
        };
        let ram_size = match &self.mem {
            Some(m) => parse_size(m)?,
            None => 128 << 20,
        };
        let bios = match self.bios.as_deref() {
            None | Some("default") => Bios::Default,
            Some("none") => Bios::None,
            Some("") => return Err("-bios needs a file name, 'none' or 'default'".into()),
            Some(f) => Bios::File(PathBuf::from(f)),
        };
        let mut accel = self.accel.as_deref().map(parse_accel).transpose()?.unwrap_or_default();
        if self.enable_kvm && !accel.kinds.contains(&AccelKind::Kvm) {
            accel.kinds.insert(0, AccelKind::Kvm);
        }
        Ok(Action::Run(Box::new(Config {
            machine,
            ram_size,
            bios,
            kernel: self.kernel,
            initrd: self.initrd,
            append: self.append,
            dtb: self.dtb,
            dumpdtb: self.machine.split(',').find_map(|o| o.strip_prefix("dumpdtb=")).map(PathBuf::from),
            serial: self.serial.as_deref().map(parse_serial).transpose()?.unwrap_or(Serial::Stdio),
            smp: self.smp.as_deref().map(parse_smp).transpose()?.unwrap_or(1),
            debug,
            logfile: self.logfile,
            tier: accel.tier,
            thresh: accel.thresh,
            baseline: accel.baseline,
            regions: accel.regions,
            shared_tbs: accel.shared_tbs,
            mttcg: accel.multi,
            accels: accel.kinds,
            debug_exit: parse_devices(&self.device)?,
            no_reboot: self.no_reboot,
            gdb: match (&self.gdb, self.gdb_default) {
                (Some(dev), _) => Some(kite_gdb::Listen::parse(dev)?),
                (None, true) => Some(kite_gdb::Listen::Tcp { host: String::new(), port: 1234 }),
                (None, false) => None,
            },
            freeze: self.freeze,
            perfmap: self.perfmap,
        })))
    }
}

/// Parse the process arguments. clap's own errors (unknown option, missing
/// value) and `--help`/`--version` come back as `clap::Error`, which the
/// caller prints and exits with (`Error::exit`); checks of our own come
/// back as `Ok(Err(one_line))`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Result<Action, String>, clap::Error> {
    let args = match rewrite_qemu_args(args) {
        Ok(a) => a,
        Err(msg) => return Ok(Err(msg)),
    };
    let raw = RawArgs::try_parse_from(args)?;
    Ok(raw.check())
}

/// A clap usage error as one line, without clap's `error: ` prefix, usage
/// and tips (Kite's errors are always one line).
pub fn clap_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("invalid command line");
    let line = line.strip_prefix("error: ").unwrap_or(line);
    format!("{line} (see --help)")
}

/// Whether a clap "error" is really a request to print help or the version.
pub fn is_clap_display(e: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(v: &[&str]) -> Result<Config, String> {
        let mut all = vec!["kite"];
        all.extend_from_slice(v);
        match parse(os(&all)).map_err(|e| e.to_string())?? {
            Action::Run(c) => Ok(*c),
            Action::Print(p) => Err(format!("print: {p}")),
        }
    }

    #[test]
    fn rewrites_single_dash_long_options_but_not_values() {
        let r = rewrite_qemu_args(os(&[
            "kite",
            "-kernel",
            "-bios",
            "-machine=virt",
            "-append",
            "-nographic",
            "-m",
            "-kernel",
            "-nographic",
            "-no-reboot",
            "--",
            "-smp",
        ]))
        .unwrap();
        assert_eq!(
            r,
            os(&[
                "kite",
                "--kernel",
                "-bios",
                "--machine=virt",
                "--append",
                "-nographic",
                "-m",
                "-kernel",
                "--nographic",
                "--no-reboot",
                "--",
                "-smp"
            ])
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128M"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("256"), Ok(256 << 20));
        assert_eq!(parse_size("size=512M"), Ok(512 << 20));
        assert_eq!(parse_size("65536K"), Ok(64 << 20));
        for bad in ["", "M", "12Q", "-1G", "0", "1.5.G", "99999999999999999999T", "9999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn full_qemu_command_line() {
        let c = run(&[
            "-M",
            "virt",
            "-m",
            "1G",
            "-bios",
            "none",
            "-kernel",
            "k.elf",
            "-initrd",
            "i.cpio",
            "-append",
            "console=ttyS0 -x",
            "-nographic",
            "-serial",
            "mon:stdio",
            "-smp",
            "1",
            "-d",
            "in_asm,int",
            "-d",
            "guest_errors,stats",
            "-D",
            "log.txt",
            "-accel",
            "tcg,tier=interp",
            "-no-reboot",
        ])
        .unwrap();
        assert_eq!(c.machine, "virt");
        assert_eq!(c.ram_size, 1 << 30);
        assert_eq!(c.bios, Bios::None);
        assert_eq!(c.kernel, Some(PathBuf::from("k.elf")));
        assert_eq!(c.initrd, Some(PathBuf::from("i.cpio")));
        assert_eq!(c.append.as_deref(), Some("console=ttyS0 -x"));
        assert_eq!(c.serial, Serial::Stdio);
        assert_eq!(c.debug.trace_targets, vec!["in_asm", "int"]);
        assert!(c.debug.guest_errors && c.debug.stats);
        assert_eq!(c.logfile, Some(PathBuf::from("log.txt")));
        assert_eq!(c.tier, Tier::Interp);
        assert!(c.no_reboot);
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.ram_size, 128 << 20);
        assert_eq!(c.bios, Bios::Default);
        assert_eq!((c.tier, c.thresh), (Tier::Tiered, kite_jit::DEFAULT_THRESH));
        assert_eq!(c.serial, Serial::Stdio);
        assert_eq!(c.smp, 1);
        assert!(!c.no_reboot);
        assert_eq!(run(&["--machine", "virt", "-machine", "virt"]).unwrap().machine, "virt");
        assert_eq!(run(&["-bios", "fw.bin"]).unwrap().bios, Bios::File("fw.bin".into()));
        assert_eq!(run(&["-smp", "cpus=2"]).unwrap().smp, 2);
        assert_eq!(run(&["-smp", "8"]).unwrap().smp, 8);
        assert_eq!(run(&["-dtb", "x.dtb"]).unwrap().dtb, Some(PathBuf::from("x.dtb")));
        assert_eq!(run(&[]).unwrap().dumpdtb, None);
        for m in ["virt,dumpdtb=out.dtb", "dumpdtb=out.dtb", "type=virt,dumpdtb=out.dtb"] {
            let c = run(&["-machine", m]).unwrap();
            assert_eq!((c.machine, c.dumpdtb), ("virt", Some(PathBuf::from("out.dtb"))), "{m}");
        }
        assert_eq!(run(&["-serial", "none"]).unwrap().serial, Serial::None);
        assert_eq!(run(&["-accel", "tcg"]).unwrap().tier, Tier::Tiered);
        assert_eq!(run(&["-accel", "tcg,tier=jit"]).unwrap().tier, Tier::Jit);
        assert_eq!(run(&["-accel", "tcg,thresh=5"]).unwrap().thresh, 5);
        assert!(run(&["-accel", "tcg"]).unwrap().baseline);
        assert!(!run(&["-accel", "tcg,first=interp"]).unwrap().baseline);
        assert!(run(&["-accel", "tcg"]).unwrap().regions);
        assert!(!run(&["-accel", "tcg,regions=off"]).unwrap().regions);
        assert!(run(&["-accel", "tcg"]).unwrap().shared_tbs);
        assert!(!run(&["-accel", "tcg,thread=multi,tb-cache=private"]).unwrap().shared_tbs);
        assert!(run(&["-accel", "tcg,tb-cache=public"]).is_err());
        assert!(run(&["-accel", "tcg,regions=maybe"]).is_err());
        assert_eq!(run(&["-accel", "tcg,thread=single"]).unwrap().mttcg, Some(false));
        assert_eq!(run(&["-accel", "tcg,thread=multi,tier=jit"]).unwrap().mttcg, Some(true));
        assert_eq!(run(&["-accel", "tcg"]).unwrap().mttcg, None);
        assert_eq!(run(&["-accel", "kvm:tcg"]).unwrap().accels, vec![AccelKind::Kvm, AccelKind::Tcg]);
        assert_eq!(run(&["-enable-kvm"]).unwrap().accels, vec![AccelKind::Kvm]);
        assert!(run(&[]).unwrap().accels.is_empty());
        let c = run(&["-M", "microvm", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]).unwrap();
        assert_eq!((c.machine, c.debug_exit), ("microvm", Some((0xf4, 4))));
        assert_eq!(run(&["-device", "isa-debug-exit"]).unwrap().debug_exit, Some((0x501, 2)));
    }

    #[test]
    fn help_lists() {
        let mut all = os(&["kite", "-M", "help"]);
        assert!(matches!(parse(all.clone()), Ok(Ok(Action::Print(p))) if p.contains("virt")));
        all = os(&["kite", "-d", "help"]);
        assert!(matches!(parse(all), Ok(Ok(Action::Print(p))) if p.contains("guest_errors")));
    }

    #[test]
    fn one_line_errors() {
        for (args, want) in [
            (&["-M", "pc"][..], "unknown machine 'pc'"),
            (&["-M", "virt,aia=aplic"], "unsupported machine option"),
            (&["-m", "lots"], "invalid memory size 'lots'"),
            (&["-d", "in_asm,bogus"], "unknown -d item 'bogus'"),
            (&["-accel", "hvf"], "unsupported"),
            (&["-accel", "kvm:foo"], "unknown accelerator 'foo'"),
            (&["-device", "e1000"], "unsupported device 'e1000'"),
            (&["-device", "isa-debug-exit,iobase=0xzz"], "invalid value"),
            (&["-device", "isa-debug-exit,iobase=0xffff,iosize=4"], "invalid isa-debug-exit port range"),
            (&["-accel", "tcg,tier=fast"], "invalid tcg tier 'fast'"),
            (&["-accel", "tcg,thread=many"], "invalid tcg thread 'many'"),
            (&["-accel", "tcg,first=jit"], "invalid tcg first tier 'jit'"),
            (&["-accel", "tcg,thresh=-1"], "invalid tcg thresh '-1'"),
            (&["-accel", "tcg,thresh=99999999"], "invalid tcg thresh"),
            (&["-smp", "0"], "invalid -smp"),
            (&["-smp", "9"], "at most 8 harts"),
            (&["-M", "virt,dumpdtb="], "unsupported machine option"),
            (&["-serial", "pty"], "unsupported -serial backend"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        assert_eq!(run(&["-frobnicate"]).unwrap_err(), "unknown option '-frobnicate' (see --help)");
        assert_eq!(run(&["-m1G"]).unwrap().ram_size, 1 << 30, "attached short values still work");
        // Other usage errors are clap's: an error, not a panic.
        assert!(parse(os(&["kite", "--frobnicate"])).is_err());
        assert!(parse(os(&["kite", "-kernel"])).is_err());
        assert!(parse(os(&["kite", "stray"])).is_err());
        let e = parse(os(&["kite", "--frobnicate"])).unwrap_err();
        assert!(!is_clap_display(&e));
        let line = clap_error_line(&e);
        assert_eq!(line, "unexpected argument '--frobnicate' found (see --help)");
        // QEMU takes the word after an option as its value, dashes and all.
        assert_eq!(run(&["-m", "-5"]).unwrap_err(), "invalid memory size '-5' (examples: 128M, 1G, 256)");
        assert_eq!(run(&["-kernel", "-x.elf"]).unwrap().kernel, Some(PathBuf::from("-x.elf")));
    }

    #[test]
    fn version_and_help_are_clap_displays() {
        let e = parse(os(&["kite", "-version"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(e.to_string().trim(), "kite 0.1.0");
        let e = parse(os(&["kite", "-help"])).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(is_clap_display(&e));
    }
}
