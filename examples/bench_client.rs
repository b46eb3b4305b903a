//! The load client of `scripts/bench.sh`: a compiled, keep-alive HTTP client, so that a
//! server answering in half a millisecond is measured rather than the client.
//!
//! Every mode prints one JSON object on stdout. Latencies are exact percentiles (nearest
//! rank over every sample, no histogram buckets), in milliseconds.
//!
//! ```text
//! bench_client cold  --bin PLUGIN --cert-file CA.pem --runs 25 --tmpdir DIR
//! bench_client http  --addr URL --token T --n 2000 --warmup 200 NAME=METHOD:/v1/path ...
//! bench_client load  --addr URL --token T --n 200 --concurrency 8 NAME=METHOD:/v1/path
//! bench_client cpu   --addr URL --token T --n 2000 --pid server=PID --pid plugin=PID
//!                    NAME=METHOD:/v1/path ...
//! bench_client mint-ab --addr URL --token T --fake-url U --ca CA.pem --fake-token K
//!                      --tenant-id ID --owner-id ID --n 200 --what creds|rotate
//! ```
//!
//! `http` interleaves its requests (A, B, A, B, … with the order alternating each round), so
//! that noise from other processes on the machine lands on every series alike.
//!
//! `cpu` splits a request's cost between processes: it sends each request in blocks of 100
//! (A×100, B×100, A×100, …) and charges the CPU time and context switches each watched process
//! spent during a block (from `/proc/PID/task/*/schedstat` and `status`) to that block's
//! request, as microseconds and switches per request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Exec the plugin as the server would, until its handshake line.
    Cold {
        #[arg(long)]
        bin: String,
        #[arg(long)]
        cert_file: String,
        #[arg(long, default_value_t = 25)]
        runs: usize,
        #[arg(long)]
        tmpdir: String,
    },
    /// Sequential, interleaved requests over one keep-alive connection.
    Http {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 2000)]
        n: usize,
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// `NAME=METHOD:/v1/path[:json body]`
        requests: Vec<String>,
    },
    /// One request `n` times from `concurrency` tasks.
    Load {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 200)]
        n: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        request: String,
    },
    /// CPU time per request of each watched process, request by request type.
    Cpu {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, default_value_t = 2000)]
        n: usize,
        /// `NAME=PID` of a process to watch (repeat).
        #[arg(long = "pid")]
        pids: Vec<String>,
        /// `NAME=METHOD:/v1/path[:body]`
        requests: Vec<String>,
    },
    /// A mint through the server (A) against the same Qlik calls made directly (B).
    MintAb {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        fake_url: String,
        #[arg(long)]
        ca: String,
        #[arg(long)]
        fake_token: String,
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        owner_id: String,
        #[arg(long, default_value_t = 200)]
        n: usize,
        #[arg(long, default_value = "creds")]
        what: String,
    },
}

/// The server to send requests to.
#[derive(clap::Args)]
struct ServerArgs {
    /// The server's address, e.g. `http://127.0.0.1:8200`.
    #[arg(long)]
    addr: String,
    /// A token with access to every path used.
    #[arg(long)]
    token: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let out = match Cli::parse().mode {
        Mode::Cold {
            bin,
            cert_file,
            runs,
            tmpdir,
        } => cold(&bin, &cert_file, runs, &tmpdir)?,
        Mode::Http {
            server,
            n,
            warmup,
            requests,
        } => http(&server.addr, &server.token, n, warmup, &requests).await?,
        Mode::Load {
            server,
            n,
            concurrency,
            request,
        } => load(&server.addr, &server.token, n, concurrency, &request).await?,
        Mode::Cpu {
            server,
            n,
            pids,
            requests,
        } => cpu(&server.addr, &server.token, n, &pids, &requests).await?,
        Mode::MintAb {
            server,
            fake_url,
            ca,
            fake_token,
            tenant_id,
            owner_id,
            n,
            what,
        } => {
            let fake = Fake::new(&fake_url, &ca, &fake_token, &tenant_id, &owner_id)?;
            mint_ab(&server.addr, &server.token, &fake, n, &what).await?
        }
    };
    println!("{out}");
    Ok(())
}

/// Exact percentiles of samples in seconds, reported in milliseconds.
fn summary(samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return json!({ "n": 0 });
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1] * 1000.0
    };
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    json!({
        "n": samples.len(),
        "min_ms": round3(samples[0] * 1000.0),
        "p50_ms": round3(pick(0.50)),
        "p90_ms": round3(pick(0.90)),
        "p99_ms": round3(pick(0.99)),
        "max_ms": round3(samples[samples.len() - 1] * 1000.0),
        "mean_ms": round3(mean * 1000.0),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn cold(bin: &str, cert_file: &str, runs: usize, tmpdir: &str) -> Result<Value, BoxError> {
    let cert = std::fs::read_to_string(cert_file)?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = Command::new(bin)
            .env(
                "VAULT_BACKEND_PLUGIN",
                "6669da05-b1c8-4f49-97d9-c8e5bed98e20",
            )
            .env("PLUGIN_PROTOCOL_VERSIONS", "5")
            .env("PLUGIN_CLIENT_CERT", &cert)
            .env("PLUGIN_MIN_PORT", "10000")
            .env("PLUGIN_MAX_PORT", "25000")
            .env("TMPDIR", tmpdir)
            .env("QLIK_PLUGIN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let elapsed = start.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        if !line.starts_with("1|5|unix|") {
            return Err(format!("unexpected handshake line {line:?}").into());
        }
        samples.push(elapsed);
    }
    Ok(summary(&mut samples))
}

/// A request spec: `NAME=METHOD:/path[:body]`.
#[derive(Clone)]
struct Spec {
    name: String,
    method: reqwest::Method,
    path: String,
    body: Option<String>,
}

fn parse_spec(text: &str) -> Result<Spec, BoxError> {
    let (name, rest) = text.split_once('=').ok_or("expected NAME=METHOD:/path")?;
    let (method, rest) = rest.split_once(':').ok_or("expected METHOD:/path")?;
    let (path, body) = match rest.split_once(":{") {
        Some((path, body)) => (path.to_string(), Some(format!("{{{body}"))),
        None => (rest.to_string(), None),
    };
    Ok(Spec {
        name: name.to_string(),
        method: method.parse()?,
        path,
        body,
    })
}

fn client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .http1_only()
        .pool_max_idle_per_host(64)
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// One request; the elapsed time and (for a failure) the body.
async fn send(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    spec: &Spec,
) -> Result<(f64, Option<String>), BoxError> {
    let mut request = client
        .request(spec.method.clone(), format!("{addr}{}", spec.path))
        .header("X-Vault-Token", token);
    if let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let start = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    let elapsed = start.elapsed().as_secs_f64();
    if status.is_success() {
        Ok((elapsed, None))
    } else {
        Ok((
            elapsed,
            Some(format!("{status}: {}", String::from_utf8_lossy(&body))),
        ))
    }
}

async fn http(
    addr: &str,
    token: &str,
    n: usize,
    warmup: usize,
    requests: &[String],
) -> Result<Value, BoxError> {
    let specs: Vec<Spec> = requests
        .iter()
        .map(|r| parse_spec(r))
        .collect::<Result<_, _>>()?;
    if specs.is_empty() {
        return Err("no requests given".into());
    }
    let client = client()?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(n); specs.len()];
    let mut errors: Vec<(usize, Option<String>)> = vec![(0, None); specs.len()];
    let started = Instant::now();
    for round in 0..warmup + n {
        for k in 0..specs.len() {
            // Alternate the order each round: no series always runs right after another.
            let i = if round % 2 == 0 {
                k
            } else {
                specs.len() - 1 - k
            };
            let (elapsed, error) = send(&client, addr, token, &specs[i]).await?;
            if let Some(error) = error {
                errors[i].0 += 1;
                errors[i].1.get_or_insert(error);
            } else if round >= warmup {
                samples[i].push(elapsed);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut s = summary(&mut samples[i]);
        s["errors"] = json!(errors[i].0);
        if let Some(first) = &errors[i].1 {
            s["first_error"] = json!(first.chars().take(300).collect::<String>());
        }
        out.insert(spec.name.clone(), s);
    }
    out.insert(
        "wall_s".into(),
        json!(round3(started.elapsed().as_secs_f64())),
    );
    Ok(Value::Object(out))
}

/// CPU nanoseconds and context switches of every thread of a process so far.
fn process_cpu(pid: u32) -> Result<(u64, u64), BoxError> {
    let (mut ns, mut switches) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may end between the listing and the reads: skip it.
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok((ns, switches))
}

async fn cpu(
    addr: &str,
    token: &str,
    n: usize,
    pids: &[String],
    requests: &[String],
) -> Result<Value, BoxError> {
    const BLOCK: usize = 100;
    let specs: Vec<Spec> = requests
        .iter()
        .map(|r| parse_spec(r))
        .collect::<Result<_, _>>()?;
    let watched: Vec<(String, u32)> = pids
        .iter()
        .map(|p| {
            let (name, pid) = p.split_once('=').ok_or("expected --pid NAME=PID")?;
            Ok::<_, BoxError>((name.to_string(), pid.parse()?))
        })
        .collect::<Result<_, _>>()?;
    if specs.is_empty() || watched.is_empty() {
        return Err("give requests and at least one --pid".into());
    }
    let client = client()?;
    // Warm-up: connections, caches, the plugin's first storage reads.
    for spec in &specs {
        for _ in 0..50 {
            send(&client, addr, token, spec).await?;
        }
    }
    // Per request type: wall seconds, and per watched process (ns, switches).
    let mut wall = vec![0f64; specs.len()];
    let mut used = vec![vec![(0u64, 0u64); watched.len()]; specs.len()];
    let mut errors = vec![0usize; specs.len()];
    let mut done = 0;
    while done < n {
        let block = BLOCK.min(n - done);
        for (i, spec) in specs.iter().enumerate() {
            let before: Vec<_> = watched
                .iter()
                .map(|(_, pid)| process_cpu(*pid))
                .collect::<Result<_, _>>()?;
            let start = Instant::now();
            for _ in 0..block {
                if send(&client, addr, token, spec).await?.1.is_some() {
                    errors[i] += 1;
                }
            }
            wall[i] += start.elapsed().as_secs_f64();
            for (j, (_, pid)) in watched.iter().enumerate() {
                let after = process_cpu(*pid)?;
                used[i][j].0 += after.0.saturating_sub(before[j].0);
                used[i][j].1 += after.1.saturating_sub(before[j].1);
            }
        }
        done += block;
    }
    let mut out = serde_json::Map::new();
    for (i, spec) in specs.iter().enumerate() {
        let mut entry = serde_json::Map::new();
        entry.insert("n".into(), json!(done));
        entry.insert("errors".into(), json!(errors[i]));
        entry.insert(
            "wall_us".into(),
            json!((wall[i] * 1e6 / done as f64).round()),
        );
        for (j, (name, _)) in watched.iter().enumerate() {
            entry.insert(
                format!("{name}_cpu_us"),
                json!((used[i][j].0 as f64 / 1e3 / done as f64).round()),
            );
            entry.insert(
                format!("{name}_switches"),
                json!(((used[i][j].1 as f64 / done as f64) * 10.0).round() / 10.0),
            );
        }
        out.insert(spec.name.clone(), Value::Object(entry));
    }
    Ok(Value::Object(out))
}

async fn load(
    addr: &str,
    token: &str,
    n: usize,
    concurrency: usize,
    request: &str,
) -> Result<Value, BoxError> {
    let spec = Arc::new(parse_spec(request)?);
    let client = client()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, spec, next) = (client.clone(), spec.clone(), next.clone());
        let (addr, token) = (addr.to_string(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                match send(&client, &addr, &token, &spec).await {
                    Ok((elapsed, None)) => samples.push(elapsed),
                    Ok((_, Some(error))) => errors.push(error),
                    Err(error) => errors.push(error.to_string()),
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (s, e) = task.await?;
        samples.extend(s);
        errors.extend(e);
    }
    let wall = started.elapsed().as_secs_f64();
    let mut s = summary(&mut samples);
    s["concurrency"] = json!(concurrency);
    s["wall_s"] = json!(round3(wall));
    s["per_s"] = json!(round3(s["n"].as_f64().unwrap_or(0.0) / wall));
    s["errors"] = json!(errors.len());
    if let Some(first) = errors.first() {
        s["first_error"] = json!(first.chars().take(300).collect::<String>());
    }
    Ok(s)
}

/// The fake tenant, called directly with the same HTTP stack the engine uses.
struct Fake {
    http: reqwest::Client,
    url: String,
    token: String,
    tenant_id: String,
    owner_id: String,
}

impl Fake {
    fn new(
        url: &str,
        ca: &str,
        token: &str,
        tenant_id: &str,
        owner_id: &str,
    ) -> Result<Self, BoxError> {
        let pem = std::fs::read(ca)?;
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            tenant_id: tenant_id.to_string(),
            owner_id: owner_id.to_string(),
        })
    }

    async fn get(&self, bearer: &str, path: &str) -> Result<Value, BoxError> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(bearer)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status} {body}").into());
        }
        Ok(body)
    }

    async fn create(&self, bearer: &str) -> Result<Value, BoxError> {
        let response = self
            .http
            .post(format!("{}/api/v1/api-keys", self.url))
            .bearer_auth(bearer)
            .json(&json!({ "description": "bench direct", "expiry": "PT1H" }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST api-keys: {status} {body}").into());
        }
        Ok(body)
    }

    /// What `creds/<role>` asks of Qlik: the key-slot count, then the new key.
    async fn creds_calls(&self) -> Result<(), BoxError> {
        self.slot_count_calls().await?;
        self.create(&self.token).await?;
        Ok(())
    }

    /// The key-slot count (`creds`, and `rotate` while leases hold the previous key): tenant
    /// limits, then the owner's active keys (every page).
    async fn slot_count_calls(&self) -> Result<(), BoxError> {
        self.get(
            &self.token,
            &format!("/api/v1/api-keys/configs/{}", self.tenant_id),
        )
        .await?;
        let mut path = format!(
            "/api/v1/api-keys?limit=100&sub={}&status=active",
            self.owner_id
        );
        loop {
            let page = self.get(&self.token, &path).await?;
            match page
                .pointer("/links/next/href")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                Some(next) => {
                    path = match next.strip_prefix(&self.url) {
                        Some(p) => p.to_string(),
                        None => next,
                    }
                }
                None => break,
            }
        }
        Ok(())
    }

    /// What `rotate` asks of Qlik when a lease holds the previous key (every rotation of the
    /// benchmark but the first: each `rotate` lease holds its key): the key-slot count, the
    /// new key, then `users/me` with it.
    async fn rotate_calls(&self) -> Result<(), BoxError> {
        self.slot_count_calls().await?;
        let created = self.create(&self.token).await?;
        let token = created
            .get("token")
            .and_then(Value::as_str)
            .ok_or("no token in the created key")?;
        self.get(token, "/api/v1/users/me").await?;
        Ok(())
    }
}

async fn mint_ab(
    addr: &str,
    token: &str,
    fake: &Fake,
    n: usize,
    what: &str,
) -> Result<Value, BoxError> {
    let spec = match what {
        "creds" => parse_spec("creds=GET:/v1/qlik/creds/bench")?,
        "rotate" => parse_spec("rotate=POST:/v1/qlik/rotate:{}")?,
        other => return Err(format!("unknown mint kind {other}").into()),
    };
    let client = client()?;
    let mut through = Vec::with_capacity(n);
    let mut direct = Vec::with_capacity(n);
    let mut errors = BTreeMap::<String, usize>::new();
    for round in 0..n {
        for leg in [round % 2, 1 - round % 2] {
            if leg == 0 {
                let (elapsed, error) = send(&client, addr, token, &spec).await?;
                match error {
                    None => through.push(elapsed),
                    Some(e) => *errors.entry(e.chars().take(200).collect()).or_default() += 1,
                }
            } else {
                let start = Instant::now();
                let result = match what {
                    "creds" => fake.creds_calls().await,
                    _ => fake.rotate_calls().await,
                };
                match result {
                    Ok(()) => direct.push(start.elapsed().as_secs_f64()),
                    Err(e) => *errors.entry(e.to_string()).or_default() += 1,
                }
            }
        }
    }
    let through = summary(&mut through);
    let direct = summary(&mut direct);
    let overhead =
        through["p50_ms"].as_f64().unwrap_or(0.0) - direct["p50_ms"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "through_server": through,
        "qlik_direct": direct,
        "overhead_p50_ms": round3(overhead),
        "errors": errors,
    }))
}
