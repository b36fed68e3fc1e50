//! A real mosquitto broker started by a test (on a free loopback port, with a
//! temp config) and `mosquitto_sub` as a subscriber.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ring::PATIENCE;
use super::{free_port, peer, TempDir};

/// A mosquitto broker on a free loopback port; killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
}

impl Broker {
    /// `extra` lines go into the listener's config (e.g. a password file).
    pub fn start(extra: &str) -> Broker {
        Broker::start_on(free_port(), extra)
    }

    /// A broker on `port` (a restarted one).
    pub fn start_on(port: u16, extra: &str) -> Broker {
        let mosquitto = peer("mosquitto");
        let dir = TempDir::new("mosquitto");
        let user = String::from_utf8(
            Command::new(peer("id"))
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .unwrap();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "user {}\npersistence false\nlog_dest stderr\nlog_type all\nper_listener_settings true\n\
                 listener {port} 127.0.0.1\n{extra}\n",
                user.trim()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto");
        let broker = Broker { child, port, dir };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `mosquitto_pub` of `payload` on `topic` (`-r`: retained), waited for.
    pub fn publish(&self, topic: &str, payload: &str, retained: bool) {
        let mut command = Command::new(peer("mosquitto_pub"));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-m", payload]);
        if retained {
            command.arg("-r");
        }
        let status = command.status().expect("spawn mosquitto_pub");
        assert!(status.success(), "mosquitto_pub {topic}: {status}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as `mosquitto_sub -v` prints it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: String,
}

/// `mosquitto_sub -v -t 'streamgate/#' -t 'homeassistant/#'` (with `args`
/// before them, e.g. credentials or `-q 1`), its lines sent on; killed on drop.
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<Message>,
    pub seen: Vec<Message>,
}

impl Subscriber {
    pub fn start(broker: &Broker, args: &[&str]) -> Subscriber {
        let mut child = Command::new(peer("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(args)
            .args(["-v", "-t", "streamgate/#", "-t", "homeassistant/#"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
                // `-v` prints an empty payload (a deleted retained message) as `(null)`.
                let payload = if payload == "(null)" { "" } else { payload };
                let message = Message {
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                };
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        Subscriber {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a message satisfies `done` (a hang guard fails the test).
    pub fn until(
        &mut self,
        what: &str,
        context: &dyn Fn() -> String,
        mut done: impl FnMut(&Message) -> bool,
    ) -> Message {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "mosquitto_sub never got {what}; got {:#?}\n{}",
                    self.seen.iter().map(|m| &m.topic).collect::<Vec<_>>(),
                    context()
                )
            });
            self.seen.push(message.clone());
            if done(&message) {
                return message;
            }
        }
    }

    /// The last payload seen on `topic`.
    pub fn last(&self, topic: &str) -> Option<&str> {
        self.seen
            .iter()
            .rev()
            .find(|m| m.topic == topic)
            .map(|m| m.payload.as_str())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
