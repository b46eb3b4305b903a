//! `scripts/register.sh` against a real server: registers by sha256 and version, enables the
//! mount, takes the address and token from either prefix, changes nothing when run again,
//! updates the sha256 and reloads the mount for a new build of the same version, and keeps one
//! file per version in the plugin directory so that a mount left on an older version still
//! starts.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::DevServer;

const NAME: &str = "qlik-registered";

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a sum")
        .to_string()
}

/// Runs the script with `env` (and nothing of the caller's BAO_*/VAULT_* variables).
fn register(server: &DevServer, env: &[(&str, &str)], args: &[&str]) -> Output {
    register_in(server, Path::new(env!("CARGO_MANIFEST_DIR")), env, args)
}

/// [`register`] run from the directory `cwd`.
fn register_in(server: &DevServer, cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/register.sh");
    let out = Command::new("bash")
        .arg(script)
        .current_dir(cwd)
        .args(args)
        .env("BAO_BIN", &server.bao)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("BAO_ADDR")
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run register.sh");
    eprintln!(
        "register.sh {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "register.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mount(server: &DevServer, path: &str) -> Value {
    server.json(&["secrets", "list"])[path].clone()
}

fn catalog_sha(server: &DevServer, version: &str) -> String {
    server.json(&[
        "plugin",
        "info",
        &format!("-version={version}"),
        "secret",
        NAME,
    ])["sha256"]
        .as_str()
        .expect("sha256")
        .to_string()
}

/// The file `register.sh --plugin-dir` copies a binary of `version` to.
fn installed(server: &DevServer, version: &str) -> PathBuf {
    server.plugin_dir.join(format!("{NAME}-{version}"))
}

/// Writes `bytes` as an executable file at `path` (its directory created).
fn write_binary(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("dir");
    }
    std::fs::write(path, bytes).expect("write binary");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// What `binary --version` prints.
fn version_of(binary: &Path) -> String {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .expect("--version");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Plugin processes of these binaries still running when the test ends are killed by PID.
struct KillPlugins(u32, Vec<PathBuf>);

impl Drop for KillPlugins {
    fn drop(&mut self) {
        for binary in &self.1 {
            for pid in support::plugin_processes(self.0, binary) {
                support::kill(pid, "KILL");
            }
        }
    }
}

#[test]
fn register_is_idempotent_and_updates_a_new_build_of_the_same_version() {
    let Some(server) = DevServer::start() else {
        return;
    };
    let built = PathBuf::from(env!("CARGO_BIN_EXE_vault-plugin-secrets-qlik"));
    let version = version_of(&built);
    assert_eq!(version, format!("v{}", env!("CARGO_PKG_VERSION")));
    let _plugins = KillPlugins(server.pid(), vec![installed(&server, &version)]);
    let plugin_dir = server.plugin_dir.to_str().expect("utf-8 path").to_string();
    let args = [
        "--plugin-dir",
        &plugin_dir,
        "--name",
        NAME,
        "--path",
        "q",
        built.to_str().unwrap(),
    ];

    // First run, with the VAULT_* variables and empty BAO_* ones (the bao CLI alone would
    // take the empty ones).
    let vault_env = [
        ("BAO_ADDR", ""),
        ("BAO_TOKEN", ""),
        ("VAULT_ADDR", server.addr.as_str()),
        ("VAULT_TOKEN", "root"),
    ];
    let first = stdout_ok(&register(&server, &vault_env, &args));
    assert!(first.contains("Registered plugin"), "{first}");
    let sha = sha256(&built);
    assert_eq!(sha256(&installed(&server, &version)), sha);
    assert_eq!(catalog_sha(&server, &version), sha);
    let q = mount(&server, "q/");
    assert_eq!(q["type"], NAME, "{q}");
    assert_eq!(q["plugin_version"], version.as_str(), "{q}");
    assert_eq!(q["running_sha256"], sha.as_str(), "{q}");
    assert_eq!(q["running_plugin_version"], version.as_str(), "{q}");
    assert!(server.ok(&["path-help", "q/config"]).contains("tenant_url"));

    // Second run, with BAO_*: nothing changes, not even the mount's accessor.
    let bao_env = [("BAO_ADDR", server.addr.as_str()), ("BAO_TOKEN", "root")];
    let mounts_before = server.json(&["secrets", "list"]);
    let second = stdout_ok(&register(&server, &bao_env, &args));
    assert!(second.contains("nothing to change"), "{second}");
    assert!(!second.contains("Success!"), "{second}");
    assert_eq!(server.json(&["secrets", "list"]), mounts_before);
    assert_eq!(catalog_sha(&server, &version), sha);

    // A new build of the same version (trailing bytes do not change what an ELF binary does).
    let rebuilt = server.dir.path().join("rebuilt").join(NAME);
    let mut bytes = std::fs::read(&built).expect("read binary");
    bytes.extend_from_slice(b"\0a new build of the same version\n");
    write_binary(&rebuilt, &bytes);
    let new_sha = sha256(&rebuilt);
    assert_ne!(new_sha, sha);
    let mut new_args = args;
    new_args[6] = rebuilt.to_str().unwrap();
    let third = stdout_ok(&register(&server, &bao_env, &new_args));
    assert!(third.contains("sha256 updated"), "{third}");
    assert!(third.contains("q/ reloaded"), "{third}");
    assert_eq!(catalog_sha(&server, &version), new_sha);
    let q = mount(&server, "q/");
    assert_eq!(q["running_sha256"], new_sha.as_str(), "{q}");
    assert_eq!(
        q["accessor"], mounts_before["q/"]["accessor"],
        "the mount was replaced"
    );
    assert!(server.ok(&["path-help", "q/config"]).contains("tenant_url"));
    let fourth = stdout_ok(&register(&server, &bao_env, &new_args));
    assert!(fourth.contains("nothing to change"), "{fourth}");

    // A mount path taken by another engine is refused, with the reason.
    let mut kv_args = new_args;
    kv_args[5] = "secret";
    let out = register(&server, &bao_env, &kv_args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already a 'kv' mount"), "{err}");

    // No address at all: a clear error, nothing run.
    let out = register(&server, &[], &new_args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set BAO_ADDR or VAULT_ADDR"), "{err}");
}

#[test]
fn register_takes_a_bare_file_name_in_the_current_directory() {
    // `cd dist && scripts/register.sh --plugin-dir … vault-plugin-secrets-qlik`: the name is a
    // file here, not a command to look up in PATH.
    let Some(server) = DevServer::start() else {
        return;
    };
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let _plugins = KillPlugins(server.pid(), vec![installed(&server, &version)]);
    let dist = server.dir.path().join("dist");
    std::fs::create_dir_all(&dist).expect("dist");
    let binary = dist.join(support::PLUGIN);
    std::fs::copy(env!("CARGO_BIN_EXE_vault-plugin-secrets-qlik"), &binary).expect("copy");
    let plugin_dir = server.plugin_dir.to_str().expect("utf-8 path").to_string();
    let env = [("BAO_ADDR", server.addr.as_str()), ("BAO_TOKEN", "root")];
    let args = [
        "--plugin-dir",
        &plugin_dir,
        "--name",
        NAME,
        "--path",
        "q",
        support::PLUGIN,
    ];
    let out = stdout_ok(&register_in(&server, &dist, &env, &args));
    assert!(out.contains("Registered plugin"), "{out}");
    assert_eq!(sha256(&installed(&server, &version)), sha256(&binary));
    let q = mount(&server, "q/");
    assert_eq!(q["type"], NAME, "{q}");
    assert_eq!(q["running_sha256"], sha256(&binary).as_str(), "{q}");
    assert!(server.ok(&["path-help", "q/config"]).contains("tenant_url"));
    let again = stdout_ok(&register_in(&server, &dist, &env, &args));
    assert!(again.contains("nothing to change"), "{again}");
}

#[test]
fn a_mount_left_on_the_old_version_still_starts_after_the_new_one_is_registered() {
    // v1 is the built binary; v2 is the same binary with its version string patched to
    // another of the same length (the server runs a binary at registration and refuses one
    // whose reported version is not the one registered, so a wrapper script will not do, and
    // a second build costs CI a minute; scripts/upgrade.sh uses two real builds). Before the
    // fix, both versions were copied to the same file name, so v1's catalog entry named a
    // file that now held v2, and `old/` failed its checksum when its plugin restarted.
    let Some(server) = DevServer::start() else {
        return;
    };
    let built = PathBuf::from(env!("CARGO_BIN_EXE_vault-plugin-secrets-qlik"));
    let v1 = version_of(&built);
    let last = v1.bytes().last().expect("a version");
    assert!(last.is_ascii_digit(), "{v1}");
    let v2 = format!("{}{}", &v1[..v1.len() - 1], (last - b'0' + 1) % 10);
    let mut patched = std::fs::read(&built).expect("read binary");
    let (from, to) = (v1.as_bytes(), v2.as_bytes());
    for at in 0..=patched.len() - from.len() {
        if patched[at..].starts_with(from) {
            patched[at..at + to.len()].copy_from_slice(to);
        }
    }
    let v2_binary = server.dir.path().join("v2").join(NAME);
    write_binary(&v2_binary, &patched);
    assert_eq!(version_of(&v2_binary), v2, "the patched binary reports v2");
    let _plugins = KillPlugins(
        server.pid(),
        vec![installed(&server, &v1), installed(&server, &v2)],
    );
    let plugin_dir = server.plugin_dir.to_str().expect("utf-8 path").to_string();
    let env = [("BAO_ADDR", server.addr.as_str()), ("BAO_TOKEN", "root")];
    let with = |binary: &Path, path: &str| {
        let binary = binary.to_str().expect("utf-8 path").to_string();
        let args = [
            "--plugin-dir",
            plugin_dir.as_str(),
            "--name",
            NAME,
            "--path",
            path,
            binary.as_str(),
        ];
        stdout_ok(&register(&server, &env, &args))
    };

    with(&built, "old");
    let out = with(&v2_binary, "new");
    assert!(out.contains("Registered plugin"), "{out}");

    // Each version's file is there, holding the binary its catalog entry names.
    assert_eq!(sha256(&installed(&server, &v1)), sha256(&built));
    assert_eq!(sha256(&installed(&server, &v2)), sha256(&v2_binary));
    assert_eq!(catalog_sha(&server, &v1), sha256(&built));
    assert_eq!(catalog_sha(&server, &v2), sha256(&v2_binary));
    assert_eq!(mount(&server, "old/")["plugin_version"], v1.as_str());
    assert_eq!(
        mount(&server, "new/")["running_plugin_version"],
        v2.as_str()
    );

    // old/ restarts its plugin (as after a server restart): it still starts and answers.
    server.ok(&["plugin", "reload", "-mounts=old/"]);
    assert!(
        server
            .ok(&["path-help", "old/config"])
            .contains("tenant_url")
    );
    assert!(
        server
            .ok(&["path-help", "new/config"])
            .contains("tenant_url")
    );
    let old = mount(&server, "old/");
    assert_eq!(old["running_sha256"], sha256(&built).as_str(), "{old}");
}
