//! The workspace's own program binaries (sensor-publisher, mqtt-subscriber, api-server), run as
//! real processes the way an operator runs them: configured only through the environment we give
//! them, in a working directory of their own, with everything they print captured.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process;

/// How long [`Program::terminate`] waits after SIGTERM before it gives up and kills.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// How much of a program's output a panic message quotes.
const QUOTE_LIMIT: usize = 16_000;

/// The path of the workspace binary `name`, next to the running test's own directory.
///
/// Integration tests run from `target/<profile>/deps/`, and cargo puts the workspace's binaries
/// in `target/<profile>/`. Cargo only builds the binaries of the package under test, so a test of
/// one crate that runs another crate's program needs `cargo build --workspace` first.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test binary");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("test binary {} has no grandparent dir", exe.display()));
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        panic!(
            "binary {name} not found at {}: run `cargo build --workspace` (the test command does this)",
            path.display()
        );
    }
    path
}

/// The path of the workspace binary `name`, for a caller that is itself one of the workspace's
/// binaries (a benchmark run with `cargo run --release -p energy-bench --bin …`).
///
/// Cargo puts every binary of a profile in `target/<profile>/`, so such a caller finds `name` in
/// its own directory. When it is not there, this looks where [`binary`] looks (one directory up,
/// for a caller in `target/<profile>/deps/`), so it works from a test too.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&file))
        .collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "binary {name} not found at {}: build the workspace's programs with the same \
                 profile first (`cargo build --release --workspace` for a release run)",
                candidates
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}

/// A running workspace program started by this test; killed when dropped.
pub struct Program {
    name: String,
    // In a mutex so that `&self` methods (`wait_for_output`) can notice the program has exited.
    child: Mutex<Child>,
    output_path: PathBuf,
    // Holds the output file and, unless `start_in` was used, the working directory.
    _scratch: TempDir,
}

impl Program {
    /// Starts workspace binary `name` in a fresh empty working directory (so no `.env` file is
    /// picked up) with a clean environment: only `PATH`, `RUST_LOG=info` (unless `envs` sets it)
    /// and `envs`.
    pub fn start(name: &str, envs: &[(&str, String)]) -> Self {
        Self::spawn(name, &[], None, envs)
    }

    /// Like [`Program::start`], but in working directory `dir` (e.g. one holding a `.env` file).
    pub fn start_in(name: &str, dir: &Path, envs: &[(&str, String)]) -> Self {
        Self::spawn(name, &[], Some(dir), envs)
    }

    /// Like [`Program::start`], with command-line arguments.
    pub fn start_with_args(name: &str, args: &[&str], envs: &[(&str, String)]) -> Self {
        Self::spawn(name, args, None, envs)
    }

    /// Like [`Program::start_with_args`], but runs the executable at `exe` (e.g. one found by
    /// [`sibling_binary`]) instead of looking it up with [`binary`].
    pub fn start_exe(exe: &Path, args: &[&str], envs: &[(&str, String)]) -> Self {
        let name = exe
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| exe.display().to_string());
        Self::spawn_exe(exe.to_path_buf(), &name, args, None, envs)
    }

    fn spawn(name: &str, args: &[&str], dir: Option<&Path>, envs: &[(&str, String)]) -> Self {
        Self::spawn_exe(binary(name), name, args, dir, envs)
    }

    fn spawn_exe(
        exe: PathBuf,
        name: &str,
        args: &[&str],
        dir: Option<&Path>,
        envs: &[(&str, String)],
    ) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("test-{name}-"))
            .tempdir()
            .expect("create a temp dir for a program");
        let workdir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => {
                let workdir = scratch.path().join("work");
                std::fs::create_dir(&workdir).expect("create the program's working dir");
                workdir
            }
        };
        let output_path = scratch.path().join("output.log");
        let (stdout, stderr) = process::output_file(&output_path);

        let mut command = Command::new(&exe);
        command
            .args(args)
            .current_dir(&workdir)
            .env_clear()
            .env("PATH", process::path_env())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if !envs.iter().any(|(key, _)| *key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        Program {
            name: name.to_owned(),
            child: Mutex::new(child),
            output_path,
            _scratch: scratch,
        }
    }

    /// Everything the program has printed so far, stdout and stderr interleaved as written.
    pub fn output(&self) -> String {
        process::read_lossy(&self.output_path)
    }

    /// Waits until the output contains `needle`; panics with the output so far if it does not
    /// appear within `timeout`, or as soon as the program exits without having printed it.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // Look at the exit status before the output, so output printed just before exiting
            // is still seen by the check below.
            let exited = self.child().try_wait().ok().flatten();
            let output = self.output();
            if output.contains(needle) {
                return;
            }
            if let Some(status) = exited {
                panic!(
                    "{} exited ({status}) without printing {needle:?}; output:\n{}",
                    self.name,
                    process::tail(&output, QUOTE_LIMIT)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}; output so far:\n{}",
                    self.name,
                    process::tail(&output, QUOTE_LIMIT)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// The names of the program's threads (`/proc/<pid>/task/*/comm`); empty once it has exited.
    pub fn thread_names(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    }

    /// The program's resident memory (`VmRSS` in `/proc/<pid>/status`) in KiB, or `None` once it
    /// has exited (or where `/proc` is not available).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The program's peak resident memory so far (`VmHWM` in `/proc/<pid>/status`) in KiB, or
    /// `None` once it has exited (or where `/proc` is not available).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// The CPU time the program has used so far, user plus system (`utime + stime` in
    /// `/proc/<pid>/stat`, in clock ticks of `sysconf(_SC_CLK_TCK)`, usually 10 ms each), or
    /// `None` once it has exited (or where `/proc` is not available).
    pub fn cpu_time(&self) -> Option<Duration> {
        let text = self.proc_file("stat")?;
        // "pid (comm) state ppid …": comm may hold spaces and parentheses, so the fields are
        // counted from the last ')'. utime and stime are fields 14 and 15 of the whole line.
        let fields: Vec<&str> = text
            .get(text.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks_per_sec = u64::try_from(ticks_per_sec).ok().filter(|&t| t > 0)?;
        Some(Duration::from_secs_f64(
            (utime + stime) as f64 / ticks_per_sec as f64,
        ))
    }

    /// A `kB` field of `/proc/<pid>/status`, e.g. `"VmRSS:"`.
    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// `/proc/<pid>/<file>` of the program, while it is running.
    fn proc_file(&self, file: &str) -> Option<String> {
        let mut child = self.child();
        // Only while it is our un-reaped child, so the pid cannot be someone else's.
        if !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        std::fs::read_to_string(format!("/proc/{}/{file}", child.id())).ok()
    }

    /// SIGKILL (a crash, as far as the program can tell) and reap it.
    pub fn kill(&mut self) {
        process::kill(self.child_mut());
    }

    /// SIGTERM, then waits up to 10 s for a graceful exit and returns its exit code.
    /// If it does not exit in time it is killed, its output is printed, and `None` is returned.
    pub fn terminate(&mut self) -> Option<i32> {
        let child = self.child_mut();
        process::signal(child, libc::SIGTERM);
        if let Some(status) = process::wait_timeout(child, TERMINATE_GRACE) {
            return status.code();
        }
        process::kill(child);
        eprintln!(
            "{} did not exit within {TERMINATE_GRACE:?} of SIGTERM; killed it. Output:\n{}",
            self.name,
            process::tail(&self.output(), QUOTE_LIMIT)
        );
        None
    }

    /// The exit code if the program exits within `timeout` (`None` if it is still running, or was
    /// ended by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        process::wait_timeout(self.child_mut(), timeout).and_then(|status| status.code())
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        process::kill(self.child_mut());
        // When a test fails, what the program printed is usually the explanation.
        if std::thread::panicking() {
            eprintln!(
                "--- output of {} ---\n{}",
                self.name,
                process::tail(&self.output(), QUOTE_LIMIT)
            );
        }
    }
}

/// Runs workspace binary `name` with `args` to completion, as [`Program::start`] would start it
/// (clean environment plus `envs`, fresh working directory). Returns the exit code (`None` if it
/// was ended by a signal, or killed after `timeout`) and everything it printed.
pub fn run_to_exit(
    name: &str,
    args: &[&str],
    envs: &[(&str, String)],
    timeout: Duration,
) -> (Option<i32>, String) {
    let mut program = Program::start_with_args(name, args, envs);
    let child = program.child_mut();
    let code = match process::wait_timeout(child, timeout) {
        Some(status) => status.code(),
        None => {
            process::kill(child);
            None
        }
    };
    (code, program.output())
}
