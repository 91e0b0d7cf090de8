//! Child processes: guards that kill on drop and print their logs when a test panics, one-shot
//! runs with a deadline, and where the binaries under test are.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The Ringest binary under test: `$RINGEST_BIN` when set (to run the end-to-end tests against
/// another build), else `built`. Cargo defines `CARGO_BIN_EXE_ringest` only for the root package's
/// integration tests, so they pass `env!("CARGO_BIN_EXE_ringest")` here.
pub fn binary_under_test(built: &str) -> PathBuf {
    match std::env::var_os("RINGEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(built),
    }
}

/// A child process that is killed when dropped. Its stdout and stderr go to files under `log_dir`
/// (one pair per start); they are printed when the test panics.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Working directory of the child (`None`: the test's).
    cwd: Option<PathBuf>,
}

impl Proc {
    /// Spawns `program args`, logging under `log_dir`.
    pub fn spawn(name: &str, program: impl AsRef<Path>, args: &[String], log_dir: &Path) -> Proc {
        Self::spawn_with(name, program.as_ref(), args, log_dir, None)
    }

    /// Like [`Proc::spawn`], with `cwd` as the child's working directory (for relative paths such
    /// as the default `./data`).
    pub fn spawn_in(
        name: &str,
        program: impl AsRef<Path>,
        args: &[String],
        log_dir: &Path,
        cwd: &Path,
    ) -> Proc {
        Self::spawn_with(
            name,
            program.as_ref(),
            args,
            log_dir,
            Some(cwd.to_path_buf()),
        )
    }

    fn spawn_with(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        cwd: Option<PathBuf>,
    ) -> Proc {
        fs::create_dir_all(log_dir).unwrap();
        let mut p = Proc {
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            log_dir: log_dir.to_path_buf(),
            child: None,
            starts: 0,
            cwd,
        };
        p.start();
        p
    }

    /// Everything the child wrote to stderr so far, over all its starts.
    pub fn stderr_text(&self) -> String {
        (1..=self.starts)
            .map(|start| {
                String::from_utf8_lossy(
                    &fs::read(self.log_path(start, "stderr")).unwrap_or_default(),
                )
                .into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, start: u32, stream: &str) -> PathBuf {
        self.log_dir
            .join(format!("{}.{}.{}", self.name, start, stream))
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let out = File::create(self.log_path(self.starts, "stdout")).unwrap();
        let err = File::create(self.log_path(self.starts, "stderr")).unwrap();
        let mut cmd = Command::new(&self.program);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.name, self.program));
        eprintln!(
            "[harness] started {} pid {}: {:?} {}",
            self.name,
            child.id(),
            self.program,
            self.args.join(" ")
        );
        self.child = Some(child);
    }

    /// The process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Panics (with the logs) if the child is not running.
    pub fn assert_running(&mut self) {
        if self.child.is_none() {
            panic!("{} is not running\n{}", self.name, self.logs());
        }
        if let Some(status) = self.exited() {
            panic!("{} exited with {status}\n{}", self.name, self.logs());
        }
    }

    /// SIGKILL (`Child::kill`), then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("[harness] SIGKILLed {}", self.name);
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("[harness] {} exited after SIGTERM: {status}", self.name);
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "[harness] {} ignored SIGTERM for {grace:?}; SIGKILL",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts the process again with the same program and arguments (it must be stopped).
    pub fn restart(&mut self) {
        self.start();
    }

    /// The last 16 KiB of every log of this process.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for start in 1..=self.starts {
            for stream in ["stdout", "stderr"] {
                let path = self.log_path(start, stream);
                let data = fs::read(&path).unwrap_or_default();
                let tail = &data[data.len().saturating_sub(16 * 1024)..];
                s.push_str(&format!(
                    "----- {} (start {start}) {stream}: {} -----\n{}\n",
                    self.name,
                    path.display(),
                    String::from_utf8_lossy(tail)
                ));
            }
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// What a process run to completion by [`run_to_exit`] left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` with `stdin` fed on its standard input (then closed), in `cwd` if given,
/// and waits for it to exit. Panics, after killing it, if it is still running after `timeout`.
pub fn run_to_exit(
    program: impl AsRef<Path>,
    args: &[&str],
    stdin: &[u8],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Finished {
    let program = program.as_ref();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A process that exits early closes its stdin: a broken pipe here is not an error.
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{program:?} {args:?} still running after {timeout:?}; killed.\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

/// A child started with extra environment variables: `env K=V… program args…` (env execs the
/// program, so the pid, signals and exit status are the program's own).
pub fn spawn_with_env(
    name: &str,
    env: &[(&str, &str)],
    program: impl AsRef<Path>,
    args: &[String],
    log_dir: &Path,
) -> Proc {
    let mut full: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    full.push(program.as_ref().display().to_string());
    full.extend(args.iter().cloned());
    Proc::spawn(name, "env", &full, log_dir)
}

/// The signal that ended a process, if a signal did.
pub fn exit_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Peak resident set size (`VmHWM`) of process `pid` in KiB, from `/proc`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
