//! Checks every program's settings get: `--help` documents each one, and a bad value stops the
//! program at start, naming the setting.

use std::time::Duration;

use crate::run_to_exit;

/// `program --help` exits 0 and shows `[env: NAME` for each of `names`.
pub fn assert_help_documents(program: &str, names: &[&str]) {
    let (code, output) = run_to_exit(program, &["--help"], &[], Duration::from_secs(10));
    assert_eq!(code, Some(0), "{program} --help: {output}");
    for name in names {
        assert!(
            output.contains(&format!("[env: {name}")),
            "{program} --help lacks {name}:\n{output}"
        );
    }
}

/// For each `(name, value)` of `bad`, `program` started with that setting (plus `extra`, unless
/// it sets the same name) exits 2 with one error line that names the flag and the value (clap
/// shows the flag, with the variable as its value's name: "invalid value '-1' for
/// '--tariff-per-kwh <TARIFF_PER_KWH>': …").
pub fn assert_bad_settings_stop(program: &str, bad: &[(&str, &str)], extra: &[(&str, String)]) {
    for &(name, value) in bad {
        let mut envs = vec![(name, value.to_owned())];
        envs.extend(extra.iter().filter(|(n, _)| *n != name).cloned());
        let (code, output) = run_to_exit(program, &[], &envs, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{program} {name}={value}: {output}");
        let flag = format!("--{}", name.to_lowercase().replace('_', "-"));
        assert!(
            output.contains(&flag) && output.contains(name) && output.contains(value),
            "{program} {name}={value}: {output}"
        );
        let errors = output
            .trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count();
        assert_eq!(errors, 1, "{program} {name}={value}: {output}");
    }
}
