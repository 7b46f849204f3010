//! Ports taken by someone else between the moment preflight chooses them and the
//! moment a component binds them. The window is forced, not raced: a hook called
//! just before the components start takes the port the test names.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preflight::cluster::local::{Ports, PortsHook};
use preflight::cluster::{LocalCluster, LocalConfig};
use preflight::errors::{ClusterError, summary_line};

use crate::common;

/// Which port the hook takes the next time it is called (then it takes none).
#[derive(Clone, Copy, Debug)]
enum Take {
    Apiserver,
    ControllerManager,
}

/// A hook that takes the port `next` names, once, and keeps it taken.
#[derive(Clone, Default)]
struct Taker {
    next: Arc<Mutex<Option<Take>>>,
    held: Arc<Mutex<Vec<(u16, TcpListener)>>>,
}

impl Taker {
    fn arm(&self, take: Take) {
        *self.next.lock().unwrap() = Some(take);
    }

    fn taken(&self) -> Vec<u16> {
        self.held.lock().unwrap().iter().map(|(p, _)| *p).collect()
    }

    fn hook(&self) -> PortsHook {
        let me = self.clone();
        PortsHook(Arc::new(move |ports: &Ports| {
            let port = match me.next.lock().unwrap().take() {
                Some(Take::Apiserver) => ports.apiserver,
                Some(Take::ControllerManager) => ports.controller_manager,
                None => return,
            };
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                .unwrap_or_else(|e| panic!("taking 127.0.0.1:{port}: {e}"));
            me.held.lock().unwrap().push((port, l));
        }))
    }
}

fn config(name: &str, version_index: usize, base: &std::path::Path) -> LocalConfig {
    preflight::init_crypto();
    let version = &common::versions()[version_index];
    let mut config = LocalConfig::new(name, common::components(version));
    config.base_dir = Some(base.to_path_buf());
    config.ready_timeout = Duration::from_secs(90);
    config
}

/// Start-up and a controller-manager restart move to fresh ports when theirs are
/// taken; an upgrade cannot move the apiserver and says so.
#[tokio::test(flavor = "multi_thread")]
async fn ports_taken_before_components_bind_them_are_replaced_or_reported() {
    let base = tempfile::tempdir().unwrap();
    let taker = Taker::default();
    let mut config = config("taken", 0, base.path());
    config.on_ports = Some(taker.hook());
    taker.arm(Take::Apiserver);

    let mut cluster = LocalCluster::start(config).await.unwrap();
    let [apiserver] = taker.taken()[..] else {
        panic!("one port taken: {:?}", taker.taken())
    };
    assert_ne!(
        cluster.ports().apiserver,
        apiserver,
        "moved to a fresh port"
    );
    let log = common::read(&cluster.log_path("kube-apiserver"));
    assert!(
        log.contains(&format!("{apiserver}: bind: address already in use")),
        "the first attempt's clash stays in the log:\n{log}"
    );
    // The kubeconfig was rewritten for the new port: the admin client works.
    let client = preflight::cluster::local::client_from_kubeconfig(cluster.kubeconfig(), None)
        .await
        .unwrap();
    client.apiserver_version().await.unwrap();

    taker.arm(Take::ControllerManager);
    let before = cluster.ports().controller_manager;
    cluster.restart_controller_manager().await.unwrap();
    assert_eq!(taker.taken()[1], before);
    assert_ne!(cluster.ports().controller_manager, before);
    assert_eq!(cluster.pids().len(), 3, "all three components run");

    taker.arm(Take::Apiserver);
    let port = cluster.ports().apiserver;
    let err = cluster
        .upgrade(common::components(&common::versions()[1]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::PortTaken { component, port: p, .. } if component == "kube-apiserver" && *p == port),
        "{err:?}"
    );
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains(&format!("cannot listen on 127.0.0.1:{port} again"))
            && chain.contains("address already in use"),
        "{chain}"
    );
    drop(cluster);
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// Ports the user gave are never changed: a taken one fails the start at once, and
/// the error names the component and carries the line that says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_that_was_given_explicitly_fails_with_the_reason() {
    let base = tempfile::tempdir().unwrap();
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut ports = Ports::free().unwrap();
    ports.apiserver = busy.local_addr().unwrap().port();
    let mut config = config("given", 1, base.path());
    config.ports = Some(ports);
    let attempts = Arc::new(Mutex::new(0));
    let counter = attempts.clone();
    config.on_ports = Some(PortsHook(Arc::new(move |_| {
        *counter.lock().unwrap() += 1;
    })));

    let err = LocalCluster::start(config).await.unwrap_err();
    assert_eq!(*attempts.lock().unwrap(), 1, "no retry on given ports");
    assert!(matches!(err, ClusterError::ComponentExited { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("kube-apiserver exited during start-up"),
        "{msg}"
    );
    let line = summary_line(&format!("starting the control plane: {msg}"));
    assert!(
        line.starts_with("starting the control plane: kube-apiserver exited during start-up")
            && line.contains(&format!(
                "{}: bind: address already in use",
                ports.apiserver
            )),
        "{line}"
    );
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}
