//! Start KTM with a Flight Recorder of your own (the README's library example).

use ktm::collector::Collector;
use ktm::config::Config;
use ktm::metrics::{Batch, MetricValue};
use ktm::recorder::FlightRecorder;

/// Prints a one-line summary of each batch; a sidecar would store or forward it instead.
struct Summary;

impl FlightRecorder for Summary {
    fn record(&mut self, batch: Batch) {
        for m in &batch.metrics {
            if let MetricValue::Counter(v) = m.value {
                println!("{} {:?} = {v}", m.name, m.labels);
            }
        }
        for s in &batch.status {
            println!("{}: {:?} {}", s.module, s.state, s.reason.as_deref().unwrap_or(""));
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_yaml_str("collector:\n  interval: 2s\n")?;
    let collector = Collector::start(&config, Box::new(Summary))?;
    std::thread::sleep(std::time::Duration::from_secs(5));
    collector.stop(); // detaches every program
    Ok(())
}
