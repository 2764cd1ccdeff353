//! Measures the D-Bus layer's memory and call latency: 3 services x 60 paths plus a
//! process-level connection, on a private `dbus-daemon` (not counted in our RSS).
//!
//! `cargo run --release -p dbus-modbus-client --example rss_probe [SERVICES]` (default 3)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use dbus_modbus_client::dbus::{connect, BusChoice, Item, ItemValue, ServiceBuilder, Spawner, BUSITEM};

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut daemon = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut address = String::new();
    BufReader::new(daemon.stdout.take().ok_or("no stdout")?).read_line(&mut address)?;
    let bus = BusChoice::Address(address.trim().to_owned());

    let spawner: Spawner = Arc::new(async_executor::Executor::new());
    let ex = spawner.clone();
    let start_rss = vm_rss_kib();
    let result = async_io::block_on(ex.run(async {
        let process_conn = connect(&bus, &spawner).await?;
        let mut services = Vec::new();
        for n in 0..count {
            let mut builder = ServiceBuilder::new(format!("com.victronenergy.grid.probe{n}"));
            for i in 0..60 {
                let path = format!("/Ac/L{}/Item{i}", i % 3 + 1);
                builder.add(&path, Item::new(i as f64).with_text(format!("{i}.0 W")))?;
            }
            services.push(builder.register(&bus, &spawner).await?);
        }
        // A few publish cycles, as the engine would do once per poll.
        for round in 0..20 {
            for s in &services {
                for i in 0..60 {
                    let v = ItemValue::Double(f64::from(round * 100 + i));
                    s.set_value(&format!("/Ac/L{}/Item{i}", i % 3 + 1), v)?;
                }
                s.flush().await?;
            }
        }
        let rss_services = vm_rss_kib();
        if count < 3 {
            return Ok((rss_services, std::time::Duration::ZERO, std::time::Duration::ZERO));
        }
        let client = &process_conn.conn;
        let calls = 2000;
        let t = Instant::now();
        for _ in 0..calls {
            let dest = Some("com.victronenergy.grid.probe1");
            client.call_method(dest, "/Ac/L2/Item1", Some(BUSITEM), "GetValue", &()).await?;
        }
        let per_call = t.elapsed() / calls;
        let t = Instant::now();
        for _ in 0..200 {
            client
                .call_method(Some("com.victronenergy.grid.probe2"), "/", Some(BUSITEM), "GetItems", &())
                .await?;
        }
        let get_items = t.elapsed() / 200;
        Ok::<_, Box<dyn std::error::Error>>((rss_services, per_call, get_items))
    }));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let (rss_services, per_call, get_items) = result?;
    println!("VmRSS at start:                          {start_rss} KiB");
    println!("VmRSS with {count} services x 60 paths + 1 conn: {rss_services} KiB");
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    println!("threads:                                 {threads}");
    println!("VmRSS after 2000 GetValue + 200 GetItems: {} KiB", vm_rss_kib());
    println!("GetValue round trip (client in-process):  {per_call:?}");
    println!("GetItems (60 paths) round trip:           {get_items:?}");
    Ok(())
}
