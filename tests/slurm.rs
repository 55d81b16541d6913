//! A real single-node Slurm cluster (Debian's slurmctld, slurmd and munge, installed by
//! `tools/slurm.sh`, started here as child processes on loopback ports from a slurm.conf
//! written here): a 4-cell CPU study through `--executor slurm` gives the local executor's
//! results table byte for byte; `scancel` of the array mid-run, then `dctk run` again,
//! resumes from the checkpoints and recomputes no finished cell; two drivers started
//! together submit one array; a cell longer than its time limit checkpoints on USR1, is
//! requeued and resumes to the end. If the daemons cannot start, the test fails saying why.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[path = "support/mod.rs"]
mod support;
use support::*;

/// The daemons of a one-node cluster; stopped when dropped.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scancel").env("SLURM_CONF", &self.conf).arg("--user=root").status();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn which(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("{tool} is not installed (tools/slurm.sh installs Debian's slurmctld, slurmd, slurm-client and munge)");
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let out = Command::new("bash").arg(repo_root().join("tools/slurm.sh")).output().expect("running tools/slurm.sh");
        assert!(out.status.success(), "tools/slurm.sh failed (the Slurm tests need Debian's slurm packages):\n{}", text(&out));
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout).unwrap().trim().to_string();
        // Ports of this test process's own (two runs of the suite never share a cluster).
        let base = 20_000 + (std::process::id() % 10_000) * 2;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let conf = dir.join("slurm.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=dctktest\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nAuthInfo=socket={d}/munge.socket,cred_expire=10\nCredType=cred/munge\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 ReturnToService=2\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldPort={}\nSlurmdPort={}\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\nSchedulerType=sched/backfill\n\
                 MpiDefault=none\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 SchedulerParameters=sched_interval=1\nMessageTimeout=20\nKillWait=30\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN\n\
                 PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                base,
                base + 1
            ),
        )
        .unwrap();
        let key = dir.join("munge.key");
        std::fs::write(&key, (0..1024).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let spawn = |cmd: &mut Command, name: &str| -> Child {
            let log = std::fs::File::create(dir.join(format!("log/{name}.out"))).unwrap();
            cmd.stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log)).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"))
        };
        let mut children = vec![spawn(
            Command::new(which("munged")).args(["-F", "-f"]).arg(format!("--socket={d}/munge.socket")).arg(format!("--key-file={}", key.display())).arg(format!("--log-file={d}/log/munged.log")).arg(format!("--pid-file={d}/munged.pid")).arg(format!("--seed-file={d}/munged.seed")),
            "munged",
        )];
        let until = |what: &str, secs: u64, ok: &dyn Fn() -> bool| {
            let t = Instant::now();
            while !ok() {
                assert!(t.elapsed() < Duration::from_secs(secs), "the Slurm test cluster did not start: {what} (logs in {})", dir.join("log").display());
                std::thread::sleep(Duration::from_millis(200));
            }
        };
        until("munged's socket", 20, &|| dir.join("munge.socket").exists());
        children.push(spawn(Command::new(which("slurmctld")).args(["-D", "-i", "-f"]).arg(&conf), "slurmctld"));
        children.push(spawn(Command::new(which("slurmd")).args(["-D", "-f"]).arg(&conf), "slurmd"));
        let mut cluster = Cluster { dir: dir.to_path_buf(), conf: conf.clone(), children };
        let idle = || {
            Command::new("sinfo").env("SLURM_CONF", &conf).args(["-h", "-o", "%t"]).output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        };
        let t = Instant::now();
        while !idle() {
            for c in &mut cluster.children {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("a Slurm daemon exited ({status}) before the node was idle; logs in {}", cluster.dir.join("log").display());
                }
            }
            assert!(t.elapsed() < Duration::from_secs(60), "the Slurm test node never became idle (sinfo); logs in {}", cluster.dir.join("log").display());
            std::thread::sleep(Duration::from_millis(300));
        }
        cluster
    }

    fn dctk(&self, dir: &Path) -> Command {
        let mut c = dctk_cmd(dir);
        c.env("SLURM_CONF", &self.conf).env("DCTK_SLURM_POLL_MS", "300");
        c
    }
}

const STUDY: &str = r#"
let base = #{ name: "s", model: "micro", corpus: "data:corpora/quotes.jsonl", unique_tokens: 3_000, epochs: 3,
              val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 4 };
let runs = train(sweep(base, zip(#{ seed: [1, 2, 3, 4], lr: [3e-3, 2e-3, 4e-3, 1e-3] })));
print(table(runs, ["label", "steps", "final_val_loss"]));
"#;

fn results(runs: &Path) -> String {
    let studies: Vec<PathBuf> = std::fs::read_dir(runs.join("studies")).unwrap().map(|e| e.unwrap().path()).collect();
    std::fs::read_to_string(studies[0].join("results.csv")).unwrap()
}

fn finished(runs: &Path) -> BTreeMap<String, SystemTime> {
    if !runs.exists() {
        return BTreeMap::new();
    }
    cells(runs)
        .into_iter()
        .filter(|d| std::fs::read_to_string(d.join("status")).is_ok_and(|s| s.trim() == "done"))
        .map(|d| (d.file_name().unwrap().to_string_lossy().to_string(), std::fs::metadata(d.join("result.ron")).unwrap().modified().unwrap()))
        .collect()
}

fn slurm_args<'a>(script: &'a str, runs: &'a str) -> Vec<&'a str> {
    vec!["run", script, "--runs", runs, "--executor", "slurm", "--cpus-per-cell", "1", "-q"]
}

/// The job id of the one array submitted under `runs`.
fn array_id(runs: &Path) -> Option<String> {
    let dir = std::fs::read_dir(runs.join(".slurm")).ok()?.next()?.ok()?.path();
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("array.json")).ok()?).ok()?;
    record["job_id"].as_str().map(String::from)
}

#[test]
fn a_study_on_a_real_slurm_cluster_equals_the_local_run_resumes_after_scancel_and_a_time_limit_and_is_submitted_once() {
    let s = Scratch::new("slurm");
    let cluster = Cluster::start(&s.path().join("cluster"));
    let script = s.write("s.rhai", STUDY).to_str().unwrap().to_string();

    // The local executor, one thread per cell: the reference table.
    let out = dctk(s.path(), &["run", &script, "--runs", "local", "-j", "2", "--threads", "2", "-q"]);
    assert!(out.status.success(), "{}", text(&out));
    let reference = results(&s.path().join("local"));

    // 1. The same study as one job array: the same table, byte for byte.
    let out = cluster.dctk(s.path()).args(slurm_args(&script, "slurm1")).output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("slurm: submitted job array") && t.contains("4 cell(s)"), "{t}");
    assert_eq!(results(&s.path().join("slurm1")), reference, "the Slurm run's table differs from the local run's");
    let job_sh = std::fs::read_to_string(std::fs::read_dir(s.path().join("slurm1/.slurm")).unwrap().next().unwrap().unwrap().path().join("job.sh")).unwrap();
    assert!(job_sh.contains("#SBATCH --array=0-3") && job_sh.contains("#SBATCH --cpus-per-task=1"), "{job_sh}");
    for cell in cells(&s.path().join("slurm1")) {
        assert!(std::fs::read_to_string(cell.join("slurm.out")).unwrap().contains("\"event\":\"step\""), "per-cell task output in {}", cell.display());
    }

    // 2. scancel mid-run: the driver reports stopped cells; a rerun resumes them from their
    //    checkpoints, recomputes no finished cell, and gives the same table.
    let runs2 = s.path().join("slurm2");
    let mut driver = cluster.dctk(s.path()).args(slurm_args(&script, "slurm2")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    loop {
        let done = finished(&runs2).len();
        let with_ckpt = if runs2.exists() { cells(&runs2).iter().filter(|d| d.join("ckpt").is_dir() && !d.join("result.ron").exists()).count() } else { 0 };
        if done >= 1 && with_ckpt >= 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no cell finished with another checkpointed in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let job = array_id(&runs2).expect("the array's record");
    assert!(Command::new("scancel").env("SLURM_CONF", &cluster.conf).arg(&job).status().unwrap().success());
    let out = driver.wait_with_output().unwrap();
    let t = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && t.contains("stopped"), "{t}");
    let before = finished(&runs2);
    assert!(before.len() < 4, "every cell had finished before scancel: {t}");
    // `dctk status` tells the same from the files: done cells, and the stopped ones resumable.
    let status = text(&cluster.dctk(s.path()).args(["status", &script, "--runs", "slurm2"]).output().unwrap());
    assert!(status.contains(" done ") && (status.contains("interrupted") || status.contains("pending")), "{status}");
    assert!(status.contains(&format!("{} done", before.len())), "{status}");
    let out = cluster.dctk(s.path()).args(slurm_args(&script, "slurm2")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let after = finished(&runs2);
    for (id, mtime) in &before {
        assert_eq!(after.get(id), Some(mtime), "finished cell {id} was recomputed");
    }
    assert_eq!(results(&runs2), reference, "the resumed Slurm run's table differs");

    // 3. Two drivers at once: one array, the other attaches to it; both end with the table.
    let spawn = || cluster.dctk(s.path()).args(slurm_args(&script, "slurm3")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ta, tb) = (String::from_utf8_lossy(&a.stderr).to_string(), String::from_utf8_lossy(&b.stderr).to_string());
    assert!(a.status.success() && b.status.success(), "{ta}\n---\n{tb}");
    let submitted = [&ta, &tb].iter().filter(|t| t.contains("slurm: submitted job array")).count();
    assert_eq!(submitted, 1, "exactly one driver submits:\n{ta}\n---\n{tb}");
    assert_eq!(results(&s.path().join("slurm3")), reference);

    // 4. A time limit shorter than the cell: USR1 before the limit, the cell checkpoints,
    //    the task requeues itself and, after the requeue delay (this cluster's 10 s
    //    credential lifetime), resumes and finishes.
    let long = s
        .write("long.rhai", "let r = train(#{ name: \"long\", model: \"micro\", corpus: \"data:corpora/quotes.jsonl\", unique_tokens: 20_000, epochs: 4, val_tokens: 256, seq_len: 32, batch_size: 8, evals_per_epoch: 8 });\nprint(`steps ${r.steps}`);\n")
        .to_str()
        .unwrap()
        .to_string();
    let out = cluster.dctk(s.path()).args(["run", &long, "--runs", "slurm4", "--executor", "slurm", "--cpus-per-cell", "1", "-q", "--time", "1", "--signal-before", "50"]).output().unwrap();
    let t = text(&out);
    assert!(out.status.success() && t.contains("steps "), "{t}");
    let cell = cells(&s.path().join("slurm4")).remove(0);
    let log = std::fs::read_to_string(cell.join("log.txt")).unwrap();
    assert!(log.contains("checkpointed; rerun to resume"), "the cell was never stopped by the time limit:\n{log}");
    assert_eq!(std::fs::read_to_string(cell.join("status")).unwrap().trim(), "done");
    drop(cluster);
}
