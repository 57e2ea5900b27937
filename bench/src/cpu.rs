//! Who used the two cores during a load: CPU time of this process (the load generator), the
//! wbc processes and Redis, as a share of one core.
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    Result,
    stack::{Service, Stack},
};

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on every Linux build in use).
const TICKS_PER_S: f64 = 100.0;

/// CPU used by one process during a measurement.
#[derive(Clone, Debug, Serialize)]
pub struct CpuUse {
    pub process: String,
    /// CPU seconds per second of wall time, in percent: 100 is one whole core.
    pub percent_of_core: f64,
}

/// CPU seconds at the start of a measurement.
pub struct CpuMeter {
    start: Instant,
    before: Vec<(String, f64)>,
}

impl CpuMeter {
    pub async fn start(stack: &Stack, services: &[&Service]) -> Result<Self> {
        Ok(Self { start: Instant::now(), before: cpu_seconds(stack, services).await? })
    }

    pub async fn stop(self, stack: &Stack, services: &[&Service]) -> Result<Vec<CpuUse>> {
        let wall = self.start.elapsed().as_secs_f64();
        let after = cpu_seconds(stack, services).await?;
        Ok(after
            .into_iter()
            .zip(self.before)
            .map(|((process, a), (_, b))| CpuUse { process, percent_of_core: (a - b) / wall * 100.0 })
            .collect())
    }
}

async fn cpu_seconds(stack: &Stack, services: &[&Service]) -> Result<Vec<(String, f64)>> {
    let mut out = vec![("wbc-bench (load generator)".to_owned(), process_seconds("self"))];
    for s in services {
        out.push((s.name.clone(), process_seconds(&s.pid().to_string())));
    }
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut stack.store.connection()).await?;
    let field =
        |name: &str| -> f64 { info.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0) };
    out.push(("redis-server".to_owned(), field("used_cpu_user:") + field("used_cpu_sys:")));
    Ok(out)
}

/// utime + stime of /proc/<pid>/stat, in seconds; 0 if the process is gone.
fn process_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may itself hold spaces and ends with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_S
}
