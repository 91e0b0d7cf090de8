//! The router: places each series on the hash ring and replicates it to its ingestors.
//!
//! One request becomes at most one `thanos.WriteableStore/RemoteWrite` call per ingestor, sent in
//! parallel with the forward timeout; the local ingestor of an all-in-one is called directly. A series
//! is written once a write quorum of its replicas acknowledged it ([`quorum`]).

pub mod quorum;
pub mod ring;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use tonic::Status;

use crate::error::{Classify, ErrorClass};
use crate::grpc::PeerClient;
use crate::ingest::{IngestError, Ingestor};
use crate::limits::HEAD_SERIES_RETRY_AFTER;
use crate::remote_write::{
    encode_thanos_trailer, encode_timeseries_sized, timeseries_body_len, timeseries_field_len,
    Series, WriteRequest,
};
use quorum::{request_cause, series_outcome, write_quorum, ReplicaError};
use ring::RingHandle;

/// Why a routed write failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No hashring has been loaded yet.
    #[error("hashring not loaded yet")]
    RingNotLoaded,
    /// The ring has no place for this tenant or series.
    #[error("{0}")]
    Lookup(#[from] hashring::LookupError),
    /// Some series did not reach write quorum.
    #[error("{failed_series} of {total_series} series did not reach write quorum: {message}")]
    Replication {
        /// The request's cause, by Thanos's precedence.
        cause: ReplicaError,
        /// Series that failed.
        failed_series: usize,
        /// Series in the request.
        total_series: usize,
        /// Samples stored on a write quorum of replicas (for `X-Prometheus-Remote-Write-Samples-
        /// Written`): all of each series that reached quorum, and of a series refused in part,
        /// what its quorum-th best replica kept.
        samples_written: u64,
        /// The distinct peer errors behind it.
        message: String,
    },
}

impl Classify for RouteError {
    fn class(&self) -> ErrorClass {
        match self {
            RouteError::RingNotLoaded => ErrorClass::Unavailable,
            // Thanos answers 500 for "no matching hashring": a configuration problem, not bad input.
            RouteError::Lookup(_) => ErrorClass::Internal,
            RouteError::Replication { cause, .. } => cause.class(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        // Only ingestors' head series limits come back limited through a ring.
        (self.class() == ErrorClass::Limited).then_some(HEAD_SERIES_RETRY_AFTER)
    }
}

impl RouteError {
    /// Samples stored on a write quorum despite the error.
    pub fn samples_written(&self) -> usize {
        match self {
            RouteError::Replication {
                samples_written, ..
            } => *samples_written as usize,
            _ => 0,
        }
    }
}

/// Peers that recently failed as unavailable, skipped until their backoff ends (Thanos
/// `peerGroup`: exponential from 100 ms, doubling, with jitter, up to a maximum). While a peer is
/// backed off its replicas fail at once as unavailable instead of each request waiting out the
/// forward timeout on a dead or hung node, and the peer is not flooded with retries.
pub struct PeerStates {
    max_backoff: Duration,
    down: parking_lot::Mutex<HashMap<String, (u32, Instant)>>,
}

/// First backoff of a peer that just failed.
const MIN_PEER_BACKOFF: Duration = Duration::from_millis(100);

impl PeerStates {
    /// No peer backed off; backoffs grow up to `max_backoff`.
    pub fn new(max_backoff: Duration) -> Self {
        Self {
            max_backoff,
            down: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// When the peer may be tried again, if it is backed off now.
    pub fn backed_off_until(&self, peer: &str) -> Option<Instant> {
        let down = self.down.lock();
        let &(_, until) = down.get(peer)?;
        (until > Instant::now()).then_some(until)
    }

    /// Records a failure: the next try waits 100 ms × 2^(failures − 1) (jittered, at most the max).
    pub fn mark_unavailable(&self, peer: &str) {
        let mut down = self.down.lock();
        let e = down.entry(peer.to_string()).or_insert((0, Instant::now()));
        let exp = MIN_PEER_BACKOFF.saturating_mul(1u32 << e.0.min(16));
        let wait = exp
            .min(self.max_backoff)
            .max(MIN_PEER_BACKOFF.min(self.max_backoff));
        // Jitter in [wait/2, wait], so routers that lost a peer together do not return together.
        let jitter = {
            use std::hash::BuildHasher;
            let r = std::collections::hash_map::RandomState::new().hash_one(e.0);
            wait.mul_f64(0.5 + (r % 1000) as f64 / 2000.0)
        };
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now() + jitter;
        metrics::gauge!("ringest_forward_peer_backoff_seconds", "peer" => peer.to_string())
            .set(jitter.as_secs_f64());
    }

    /// Records a success: the peer is up again.
    pub fn mark_available(&self, peer: &str) {
        if self.down.lock().remove(peer).is_some() {
            metrics::gauge!("ringest_forward_peer_backoff_seconds", "peer" => peer.to_string())
                .set(0.0);
        }
    }
}

/// Connections to peer ingestors, one pooled HTTP/2 channel each.
#[derive(Default)]
pub struct Peers {
    clients: RwLock<HashMap<String, PeerClient>>,
    max_message_bytes: usize,
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Peers {
    /// An empty pool; messages above `max_message_bytes` are refused by peers' answers.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            clients: RwLock::new(HashMap::new()),
            max_message_bytes,
            tls: None,
        }
    }

    /// The client for `address`, connecting lazily on first use.
    pub fn get(&self, address: &str) -> Result<PeerClient, Status> {
        if let Some(c) = self.clients.read().get(address) {
            return Ok(c.clone());
        }
        let client = PeerClient::new(
            address,
            Duration::from_secs(2),
            self.max_message_bytes,
            self.tls.as_ref(),
        )?;
        Ok(self
            .clients
            .write()
            .entry(address.to_string())
            .or_insert(client)
            .clone())
    }
}

/// Routes and replicates writes; fans reads out.
pub struct Router {
    ring: RingHandle,
    peers: Peers,
    peer_states: PeerStates,
    replication_factor: usize,
    forward_timeout: Duration,
    local_endpoint: Option<String>,
    local: Option<Arc<Ingestor>>,
}

/// Maps a peer's gRPC status to the kind the quorum logic counts, through the class table.
pub fn replica_error_of(status: &Status) -> ReplicaError {
    ReplicaError::from(crate::server::status::class_of_grpc(status))
}

/// How one peer (or the local ingestor) failed its part of a write.
#[derive(Debug)]
struct PeerFailure {
    kind: ReplicaError,
    message: String,
    /// For a conflict: `(index in the peer's batch, samples rejected)` of the series it refused
    /// in part, when the peer said; the other series of the batch were stored whole.
    rejected: Option<Vec<(u32, u32)>>,
}

impl PeerFailure {
    fn new(kind: ReplicaError, message: String) -> Self {
        Self {
            kind,
            message,
            rejected: None,
        }
    }

    /// This replica's outcome for series `series` (of `samples` samples), sent in `batch`: its
    /// error, if any, and the samples of it the replica stored.
    fn series_result(
        &self,
        batch: &[u32],
        series: u32,
        samples: u64,
    ) -> (Option<ReplicaError>, u64) {
        let Some(rejected) = &self.rejected else {
            return (Some(self.kind), 0);
        };
        let Ok(pos) = batch.binary_search(&series) else {
            return (Some(self.kind), 0);
        };
        match rejected.binary_search_by_key(&(pos as u32), |r| r.0) {
            Ok(r) => (
                Some(self.kind),
                samples.saturating_sub(u64::from(rejected[r].1)),
            ),
            Err(_) => (None, samples),
        }
    }
}

impl Router {
    /// A router over `ring`; `local` is the in-process ingestor reached at `local_endpoint`.
    pub fn new(
        ring: RingHandle,
        replication_factor: usize,
        forward_timeout: Duration,
        max_message_bytes: usize,
        max_backoff: Duration,
        local_endpoint: Option<String>,
        local: Option<Arc<Ingestor>>,
    ) -> Self {
        Self {
            ring,
            peers: Peers::new(max_message_bytes),
            peer_states: PeerStates::new(max_backoff),
            replication_factor,
            forward_timeout,
            local_endpoint,
            local,
        }
    }

    /// Talks to peers over TLS with `tls` (`--remote-write.client-tls-*`).
    pub fn with_client_tls(mut self, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        self.peers.tls = tls;
        self
    }

    /// The ring in force.
    pub fn ring(&self) -> &RingHandle {
        &self.ring
    }

    /// The peer pool.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The replication factor.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The forward timeout.
    pub fn forward_timeout(&self) -> Duration {
        self.forward_timeout
    }

    /// The in-process ingestor, if `address` is this node's own endpoint.
    pub fn local_for(&self, address: &str) -> Option<&Arc<Ingestor>> {
        match (&self.local_endpoint, &self.local) {
            (Some(ep), Some(local)) if ep == address => Some(local),
            _ => None,
        }
    }

    /// Replicates every valid series of `req` to its ingestors; Ok once each reached write quorum.
    pub async fn write(&self, tenant: &str, req: &WriteRequest<'_>) -> Result<(), RouteError> {
        if req.series.is_empty() {
            return Ok(());
        }
        let ring = self.ring.current().ok_or(RouteError::RingNotLoaded)?;
        let ring_id = ring.ring_for_tenant(tenant)?;
        let rf = self.replication_factor;

        // Hash each series once; group series indexes by endpoint; remember each series' replicas.
        let mut endpoints: Vec<&str> = Vec::new();
        let mut batches: Vec<Vec<u32>> = Vec::new();
        let mut placement: Vec<u16> = Vec::with_capacity(req.series.len() * rf);
        for (i, s) in req.series.iter().enumerate() {
            let labels = req.series_labels(s).iter().map(|l| (l.name, l.value));
            let hash = hashring::series_hash(tenant, labels);
            for n in 0..rf {
                let ep = ring.get_n(ring_id, hash, n)?;
                let idx = match endpoints.iter().position(|e| *e == ep.address) {
                    Some(p) => p,
                    None => {
                        endpoints.push(&ep.address);
                        batches.push(Vec::new());
                        endpoints.len() - 1
                    }
                };
                batches[idx].push(i as u32);
                placement.push(idx as u16);
            }
        }

        // Each series goes to RF peers: size its message once, and each peer's body exactly.
        let body_lens: Vec<usize> = req
            .series
            .iter()
            .map(|s| timeseries_body_len(req.series_labels(s), req.series_samples(s)))
            .collect();
        let sends = endpoints
            .iter()
            .zip(&batches)
            .map(|(ep, idxs)| self.send(tenant, req, &body_lens, ep, idxs));
        let results = futures::future::join_all(sends).await;
        if results.iter().all(Result::is_ok) {
            metrics::counter!("ringest_replications_total", "result" => "success").increment(1);
            return Ok(());
        }

        let quorum = write_quorum(rf);
        let mut causes = Vec::new();
        let mut samples_written = 0u64;
        let mut replica_results: Vec<(Option<ReplicaError>, u64)> = Vec::with_capacity(rf);
        for (i, replicas) in placement.chunks_exact(rf).enumerate() {
            let samples = req.series_samples(&req.series[i]).len() as u64;
            replica_results.clear();
            replica_results.extend(replicas.iter().map(|&e| match &results[e as usize] {
                Ok(()) => (None, samples),
                Err(f) => f.series_result(&batches[e as usize], i as u32, samples),
            }));
            if let Err(cause) = series_outcome(replica_results.iter().map(|r| r.0), rf) {
                causes.push(cause);
            }
            // What at least a quorum of replicas kept: the quorum-th largest count.
            replica_results.sort_unstable_by_key(|r| std::cmp::Reverse(r.1));
            samples_written += replica_results.get(quorum - 1).map_or(0, |r| r.1);
        }
        metrics::counter!("ringest_replications_total", "result" => if causes.is_empty() { "success" } else { "error" })
            .increment(1);
        let Some(cause) = request_cause(causes.iter().copied()) else {
            return Ok(());
        };
        let mut reasons: Vec<&str> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|f| f.message.as_str()))
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        Err(RouteError::Replication {
            cause,
            failed_series: causes.len(),
            total_series: req.series.len(),
            samples_written,
            message: reasons.join("; "),
        })
    }

    async fn send(
        &self,
        tenant: &str,
        req: &WriteRequest<'_>,
        body_lens: &[usize],
        endpoint: &str,
        idxs: &[u32],
    ) -> Result<(), PeerFailure> {
        if let Some(local) = self.local_for(endpoint) {
            let series: Vec<&Series> = idxs.iter().map(|&i| &req.series[i as usize]).collect();
            // The same timeout as a forward, so a stalled local disk cannot hold requests forever.
            return match tokio::time::timeout(
                self.forward_timeout,
                local.write(tenant, req, &series),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => {
                    let mut f = PeerFailure::new(
                        ReplicaError::from(e.class()),
                        format!("local ingestor: {e}"),
                    );
                    if let IngestError::Conflict { stats, .. } = e {
                        f.rejected = Some(stats.rejected_series).filter(|r| !r.is_empty());
                    }
                    Err(f)
                }
                Err(_) => Err(PeerFailure::new(
                    ReplicaError::Unavailable,
                    format!(
                        "local ingestor: write timed out after {:?}",
                        self.forward_timeout
                    ),
                )),
            };
        }
        if let Some(until) = self.peer_states.backed_off_until(endpoint) {
            metrics::counter!("ringest_forward_errors_total", "peer" => endpoint.to_string(), "cause" => "BackedOff")
                .increment(1);
            return Err(PeerFailure::new(
                ReplicaError::Unavailable,
                format!(
                    "{endpoint} is backed off after failures for another {:?}",
                    until.saturating_duration_since(Instant::now())
                ),
            ));
        }
        let size: usize = idxs
            .iter()
            .map(|&i| timeseries_field_len(body_lens[i as usize]))
            .sum();
        let mut body = Vec::with_capacity(size + tenant.len() + 16);
        for &i in idxs {
            let s = &req.series[i as usize];
            let (labels, samples) = (req.series_labels(s), req.series_samples(s));
            encode_timeseries_sized(labels, samples, body_lens[i as usize], &mut body);
        }
        encode_thanos_trailer(tenant, 1, &mut body);
        let result = match self.peers.get(endpoint) {
            Ok(client) => {
                client
                    .remote_write(Bytes::from(body), self.forward_timeout)
                    .await
            }
            Err(status) => Err(status),
        };
        match &result {
            Ok(_) => self.peer_states.mark_available(endpoint),
            // Down, or hung past the forward timeout (timeouts are unavailable in the class
            // table): back off, as Thanos does on Unavailable.
            Err(s) if replica_error_of(s) == ReplicaError::Unavailable => {
                self.peer_states.mark_unavailable(endpoint)
            }
            Err(_) => {}
        }
        let outcome = if result.is_ok() { "success" } else { "error" };
        metrics::counter!("ringest_forward_requests_total", "peer" => endpoint.to_string(), "result" => outcome)
            .increment(1);
        result.map_err(|status| {
            let kind = replica_error_of(&status);
            metrics::counter!("ringest_forward_errors_total", "peer" => endpoint.to_string(), "cause" => format!("{kind:?}"))
                .increment(1);
            let mut f = PeerFailure::new(
                kind,
                format!("forwarding to {endpoint}: {}", status.message()),
            );
            if kind == ReplicaError::Conflict {
                // An empty list would claim every series stored: only a non-empty one counts.
                f.rejected = crate::grpc::rejected_series_of(&status).filter(|r| !r.is_empty());
            }
            f
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_exhausted_is_a_limit_only_when_a_ringest_ingestor_says_so() {
        let mut limited = Status::resource_exhausted("head series limit");
        limited
            .metadata_mut()
            .insert(crate::grpc::LIMITED_METADATA, "1".parse().unwrap());
        assert_eq!(replica_error_of(&limited), ReplicaError::Limited);
        // grpc-go's answer to a message over its size limit (a Thanos peer).
        let too_big = Status::resource_exhausted("grpc: received message larger than max");
        assert_eq!(replica_error_of(&too_big), ReplicaError::Unknown);
    }

    #[test]
    fn a_conflict_listing_its_series_fails_only_those() {
        let f = PeerFailure {
            kind: ReplicaError::Conflict,
            message: String::new(),
            rejected: Some(vec![(1, 2)]),
        };
        // The peer was sent series 3, 7 and 9 of the request; it refused 2 samples of the 2nd.
        let batch = [3, 7, 9];
        assert_eq!(f.series_result(&batch, 3, 4), (None, 4));
        assert_eq!(
            f.series_result(&batch, 7, 5),
            (Some(ReplicaError::Conflict), 3)
        );
        assert_eq!(f.series_result(&batch, 9, 1), (None, 1));
        let blind = PeerFailure::new(ReplicaError::Conflict, String::new());
        assert_eq!(
            blind.series_result(&batch, 3, 4),
            (Some(ReplicaError::Conflict), 0)
        );
    }

    #[test]
    fn peer_backoff_doubles_up_to_the_max_and_resets_on_success() {
        let st = PeerStates::new(Duration::from_millis(800));
        assert!(st.backed_off_until("a:1").is_none());
        let mut waits = Vec::new();
        for _ in 0..6 {
            let before = Instant::now();
            st.mark_unavailable("a:1");
            let until = st.backed_off_until("a:1").expect("backed off");
            waits.push(until - before);
        }
        // Jittered into [wait/2, wait]: 100, 200, 400, 800, 800, 800 ms at most.
        let caps = [100u64, 200, 400, 800, 800, 800];
        for (w, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(
                *w <= cap + Duration::from_millis(5) && *w >= cap / 2,
                "{waits:?}"
            );
        }
        assert!(
            st.backed_off_until("b:1").is_none(),
            "other peers are not affected"
        );
        st.mark_available("a:1");
        assert!(st.backed_off_until("a:1").is_none());
        // After a success the next failure starts over at 100 ms.
        let before = Instant::now();
        st.mark_unavailable("a:1");
        assert!(st.backed_off_until("a:1").unwrap() - before <= Duration::from_millis(105));
    }
}
