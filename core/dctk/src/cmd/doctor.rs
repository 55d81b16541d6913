//! `dctk doctor`: what dctk runs on, and what is wrong with it if something is.
use anyhow::Result;
use clap::{ArgMatches, Command};
use tch::Cuda;

use crate::env;

pub fn cli() -> Command {
    Command::new("doctor").about("Report dctk, tch and libtorch versions, devices and threads; diagnose problems")
}

pub fn exec(_args: &ArgMatches) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    println!("dctk        {}", env::DCTK_VERSION);
    println!("tch         {}", env::TCH_VERSION);
    println!("libtorch    {} (built against)", env::LIBTORCH_BUILD_VERSION);
    match (env::loaded_libtorch(), env::loaded_libtorch_version()) {
        (Some(path), version) => {
            let version = version.unwrap_or_else(|| "unknown version".into());
            println!("            {version} (loaded from {})", path.display());
            if version != "unknown version" && version != env::LIBTORCH_BUILD_VERSION {
                problems.push(format!(
                    "the loaded libtorch ({version}) differs from the one dctk was built against ({}): rebuild, or fix LD_LIBRARY_PATH",
                    env::LIBTORCH_BUILD_VERSION
                ));
            }
        }
        (None, _) => println!("            (could not tell which libtorch_cpu.so was loaded)"),
    }
    println!("cuda build  {}", if env::CUDA_FEATURE { "yes (libtorch_cuda linked)" } else { "no (CPU only; build with --features cuda for GPUs)" });
    let cuda = Cuda::is_available();
    let gpus = env::gpu_names();
    println!("cuda        {}", if cuda { format!("available, {} device(s), cudnn {}", Cuda::device_count(), Cuda::cudnn_is_available()) } else { "not available".into() });
    for (i, name) in gpus.iter().enumerate() {
        println!("  gpu {i}     {name}");
    }
    if !gpus.is_empty() && !cuda {
        problems.push(if env::CUDA_FEATURE {
            "nvidia-smi sees a GPU but libtorch cannot use it: check the driver and that LD_LIBRARY_PATH holds a CUDA build of torch's lib/".into()
        } else {
            "this machine has a GPU but dctk was built without --features cuda: rebuild with `cargo build --release --features cuda` (see README, GPU)".into()
        });
    }
    println!("threads     {} (libtorch intra-op), {} cores", tch::get_num_threads(), std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("default     device {}", env::device_name(tch::Device::cuda_if_available()));
    // A tiny op proves the library really works, not just that it loaded.
    let ok = std::panic::catch_unwind(|| {
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        (t.sum(tch::Kind::Float).double_value(&[]) - 6.0).abs() < 1e-6
    });
    match ok {
        Ok(true) => println!("check       a tensor op on the CPU works"),
        _ => problems.push("a simple tensor op failed: libtorch is broken or mismatched".into()),
    }
    if problems.is_empty() {
        println!("status      ok");
        Ok(())
    } else {
        for p in &problems {
            println!("problem     {p}");
        }
        anyhow::bail!("{} problem(s) found", problems.len())
    }
}
