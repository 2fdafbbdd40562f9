//! Child-process plumbing shared by the service and program helpers: finding executables,
//! signalling our own children by pid, waiting with a timeout, and quoting logs in panics.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How the services tell the reader what to install when an executable is missing.
pub(crate) const INSTALL_HINT: &str = "apt-get install -y mosquitto influxdb";

/// Directories searched after `PATH`: Debian installs `mosquitto` in /usr/sbin, which is not in
/// every user's PATH.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"];

/// The `PATH` handed to children whose environment we clear.
pub(crate) fn path_env() -> std::ffi::OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

/// Finds an executable named `name` in `PATH`, then in [`EXTRA_DIRS`].
pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Like [`find_executable`], but a missing service is a hard failure: tests that need it must not
/// pass (or skip) silently on a machine where it is not installed.
pub(crate) fn require_executable(name: &str) -> PathBuf {
    find_executable(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed (looked in PATH, /usr/sbin and /usr/bin): \
             install it with `{INSTALL_HINT}`"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A file opened for appending that can be given to a child as both stdout and stderr.
///
/// Both descriptors share one open file description in append mode, so the two streams
/// interleave in the order they were written and nothing is overwritten.
pub(crate) fn output_file(path: &Path) -> (File, File) {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let clone = file
        .try_clone()
        .unwrap_or_else(|e| panic!("duplicate handle of {}: {e}", path.display()));
    (file, clone)
}

/// Reads a log file written by a child, lossily: programs may print invalid UTF-8.
pub(crate) fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The last `max` bytes (on a char boundary) of `text`, so a panic message stays readable.
pub(crate) fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Sends `signal` to `child` if it has not exited yet.
///
/// `try_wait` first: once std has reaped the child its pid may belong to somebody else, while an
/// un-reaped child (even a zombie) keeps its pid, so this can only ever hit our own process.
pub(crate) fn signal(child: &mut Child, signal: libc::c_int) {
    if matches!(child.try_wait(), Ok(None)) {
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our live child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
pub(crate) fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

/// SIGTERM, then SIGKILL if the child is still running after `grace`; always reaps it.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> ExitStatus {
    signal(child, libc::SIGTERM);
    if let Some(status) = wait_timeout(child, grace) {
        return status;
    }
    kill(child)
}

/// SIGKILL and reap.
pub(crate) fn kill(child: &mut Child) -> ExitStatus {
    signal(child, libc::SIGKILL);
    child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for killed child {}: {e}", child.id()))
}

/// Starts a service (`mosquitto`, `influxd`) in `dir` with a clean environment (only `PATH`:
/// influxd, for one, lets `INFLUXDB_*` variables override its config) and its output in `log`.
pub(crate) fn spawn_service(
    exe: &Path,
    args: &[&OsStr],
    dir: &Path,
    log: &Path,
) -> io::Result<Child> {
    let (stdout, stderr) = output_file(log);
    Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            io::Error::other(format!(
                "cannot run {}: {e} (install with `{INSTALL_HINT}`)",
                exe.display()
            ))
        })
}

/// Waits until `ready()` says the service answers, polling every `poll`. Our child is checked
/// first: if it died (bad config, port taken), whatever answers on the port is not our service.
/// On a timeout the child is killed; either failure says why, naming the service `name`.
pub(crate) fn wait_ready(
    child: &mut Child,
    name: &str,
    timeout: Duration,
    poll: Duration,
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("{name} exited with {status}")));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            kill(child);
            return Err(io::Error::other(format!(
                "{name} not ready after {timeout:?}"
            )));
        }
        std::thread::sleep(poll);
    }
}
