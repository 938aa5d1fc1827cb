//! Pluggable congestion control: the ops trait, Reno and CUBIC.
//!
//! Linux: `struct tcp_congestion_ops`, `enum tcp_ca_state`, `enum tcp_ca_event`
//! in include/net/tcp.h; `tcp_slow_start()`, `tcp_cong_avoid_ai()` and Reno in
//! net/ipv4/tcp_cong.c; CUBIC in net/ipv4/tcp_cubic.c.
//!
//! The socket owns a [`CongState`] (the `tcp_sock` fields congestion control
//! reads and writes) and a [`TcpCong`] chosen once per socket by [`cong_by_name`]
//! (the built-in algorithms inline, others boxed); nothing here allocates per packet or,
//! for the built-ins, per connection. As in Linux, the
//! congestion window counts segments (`snd_cwnd`), not bytes, and time is
//! jiffies; blink's jiffies are milliseconds (HZ = 1000), so the ops take
//! `now_ms` where the kernel reads `tcp_jiffies32`.

/// Initial congestion window in segments (RFC 6928). Linux: `TCP_INIT_CWND`.
pub const TCP_INIT_CWND: u32 = 10;
/// `snd_ssthresh` before the first loss. Linux: `TCP_INFINITE_SSTHRESH`.
pub const TCP_INFINITE_SSTHRESH: u32 = 0x7fff_ffff;
/// The congestion control a socket gets unless told otherwise.
/// Linux: `CONFIG_DEFAULT_TCP_CONG` / net.ipv4.tcp_congestion_control.
pub const TCP_CONG_DEFAULT: &str = "cubic";
/// Jiffies per second (blink's jiffies are milliseconds).
const HZ: u32 = 1000;

/// Congestion-control state of a socket. Linux: `enum tcp_ca_state`
/// (`TCP_CA_Open` ... `TCP_CA_Loss`), kept in `icsk_ca_state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaState {
    /// Nothing bad seen.
    #[default]
    Open,
    /// Duplicate ACKs or SACKs seen, no reduction yet.
    Disorder,
    /// cwnd reduced for a local congestion signal or ECN.
    Cwr,
    /// Fast retransmit / fast recovery.
    Recovery,
    /// Retransmission timeout: everything outstanding considered lost.
    Loss,
}

/// Events the socket reports to congestion control. Linux: `enum tcp_ca_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaEvent {
    /// First transmission with nothing in flight (after idle). Linux:
    /// `CA_EVENT_TX_START`, sent from `tcp_event_data_sent()` *before*
    /// `lsndtime` is updated, so `now_ms - CongState::lsndtime` is the idle
    /// time. The kernel's op reads `tcp_jiffies32`; here the time comes along.
    TxStart { now_ms: u64 },
    /// cwnd restarted after idle. Linux: `CA_EVENT_CWND_RESTART`.
    CwndRestart,
    /// End of a CWR/Recovery cwnd reduction. Linux: `CA_EVENT_COMPLETE_CWR`.
    CompleteCwr,
    /// Retransmission timeout. Linux: `CA_EVENT_LOSS`.
    Loss,
}

/// The congestion-control fields of a socket. Linux: the `tcp_sock` fields
/// `snd_cwnd`, `snd_ssthresh`, `snd_cwnd_cnt`, `snd_cwnd_clamp`,
/// `prior_cwnd`, `lsndtime`, `is_cwnd_limited` and `icsk_ca_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CongState {
    /// Congestion window in segments (`snd_cwnd`).
    pub cwnd: u32,
    /// Slow-start threshold in segments (`snd_ssthresh`).
    pub ssthresh: u32,
    /// ACKed segments counted towards the next +1 in congestion avoidance
    /// (`snd_cwnd_cnt`).
    pub cwnd_cnt: u32,
    /// Upper bound of `cwnd` (`snd_cwnd_clamp`).
    pub cwnd_clamp: u32,
    /// cwnd when the last reduction started; undo restores it
    /// (`prior_cwnd`, set by the socket in `tcp_init_cwnd_reduction()` and
    /// `tcp_enter_loss()`).
    pub prior_cwnd: u32,
    /// Jiffies (ms) of the last data transmission (`lsndtime`), kept by the socket.
    pub lsndtime: u64,
    /// The sender is limited by cwnd rather than by the application or the
    /// receive window; cwnd grows only then. The socket computes it as Linux's
    /// `tcp_is_cwnd_limited()` does (in slow start: `cwnd < 2 * max_packets_out`).
    pub is_cwnd_limited: bool,
    /// Current state (`icsk_ca_state`); change it with [`tcp_set_ca_state`].
    pub ca_state: CaState,
}

impl CongState {
    /// A new connection's state: `cwnd` = [`TCP_INIT_CWND`], infinite
    /// ssthresh, no clamp, cwnd-limited. Linux: `tcp_init_sock()`.
    pub const fn new() -> Self {
        CongState {
            cwnd: TCP_INIT_CWND,
            ssthresh: TCP_INFINITE_SSTHRESH,
            cwnd_cnt: 0,
            cwnd_clamp: u32::MAX,
            prior_cwnd: 0,
            lsndtime: 0,
            is_cwnd_limited: true,
            ca_state: CaState::Open,
        }
    }
}

impl Default for CongState {
    fn default() -> Self {
        Self::new()
    }
}

/// `cwnd < ssthresh`. Linux: `tcp_in_slow_start()`.
#[inline]
pub fn tcp_in_slow_start(st: &CongState) -> bool {
    st.cwnd < st.ssthresh
}

/// Slow start with appropriate byte counting (RFC 3465): cwnd grows by the
/// number of segments ACKed, but not past ssthresh. Returns the ACKed
/// segments left over once ssthresh is reached, for congestion avoidance.
/// Linux: `tcp_slow_start()` in net/ipv4/tcp_cong.c.
pub fn tcp_slow_start(st: &mut CongState, acked: u32) -> u32 {
    let cwnd = st.cwnd.saturating_add(acked).min(st.ssthresh).max(st.cwnd);
    let left = acked - (cwnd - st.cwnd);
    st.cwnd = cwnd.min(st.cwnd_clamp);
    left
}

/// Additive increase: cwnd grows by one for every `w` segments ACKed.
/// A `w` of 0 is treated as 1. Linux: `tcp_cong_avoid_ai()`.
pub fn tcp_cong_avoid_ai(st: &mut CongState, w: u32, acked: u32) {
    let w = w.max(1);
    // If credits accumulated at a higher w, apply them gently now.
    if st.cwnd_cnt >= w {
        st.cwnd_cnt = 0;
        st.cwnd = st.cwnd.saturating_add(1);
    }
    st.cwnd_cnt = st.cwnd_cnt.saturating_add(acked);
    if st.cwnd_cnt >= w {
        let delta = st.cwnd_cnt / w;
        st.cwnd_cnt -= delta * w;
        st.cwnd = st.cwnd.saturating_add(delta);
    }
    st.cwnd = st.cwnd.min(st.cwnd_clamp);
}

/// Reno's threshold after a loss: half the window, at least 2.
/// Linux: `tcp_reno_ssthresh()`.
#[inline]
pub fn tcp_reno_ssthresh(st: &CongState) -> u32 {
    (st.cwnd >> 1).max(2)
}

/// The window to go back to when a reduction proves spurious.
/// Linux: `tcp_reno_undo_cwnd()`.
#[inline]
pub fn tcp_reno_undo_cwnd(st: &CongState) -> u32 {
    st.cwnd.max(st.prior_cwnd)
}

/// Tells the ops about a state change, then records it.
/// Linux: `tcp_set_ca_state()` in net/ipv4/tcp_input.c.
pub fn tcp_set_ca_state(ops: &mut dyn CongestionOps, st: &mut CongState, state: CaState) {
    ops.set_state(st, state);
    st.ca_state = state;
}

/// A congestion-control algorithm. Linux: `struct tcp_congestion_ops`.
///
/// The socket calls:
/// * `init` when the connection is established (`tcp_init_congestion_control()`);
/// * `cong_avoid` for every ACK that advances `snd_una` while not in
///   Recovery/CWR and `tcp_may_raise_cwnd()` (`tcp_cong_avoid()`);
/// * `ssthresh` on entering Recovery, CWR or Loss, storing the result in
///   `st.ssthresh` (`tcp_init_cwnd_reduction()`, `tcp_enter_loss()`);
/// * `set_state` through [`tcp_set_ca_state`], `cwnd_event` through
///   `tcp_ca_event()`'s call sites, `undo_cwnd` in `tcp_undo_cwnd_reduction()`.
pub trait CongestionOps: Send {
    /// The name `cong_by_name` knows it by. Linux: `.name`.
    fn name(&self) -> &'static str;

    /// Resets private state for a new connection. Linux: `.init`.
    fn init(&mut self, st: &mut CongState);

    /// The slow-start threshold after a loss. Linux: `.ssthresh`.
    fn ssthresh(&mut self, st: &CongState) -> u32;

    /// Grows cwnd for `acked` newly ACKed segments at time `now_ms`;
    /// `rtt_us` is this ACK's RTT sample, if any (Linux delivers it through
    /// `.pkts_acked`). Linux: `.cong_avoid`.
    fn cong_avoid(&mut self, st: &mut CongState, acked: u32, now_ms: u64, rtt_us: Option<u32>);

    /// Called before `st.ca_state` changes to `state`. Linux: `.set_state`.
    fn set_state(&mut self, _st: &mut CongState, _state: CaState) {}

    /// An event from the socket. Linux: `.cwnd_event`.
    fn cwnd_event(&mut self, _st: &mut CongState, _ev: CaEvent) {}

    /// cwnd after undoing a spurious reduction. Defaults to Reno's
    /// `max(cwnd, prior_cwnd)`, which both Reno and CUBIC use in Linux.
    /// Linux: `.undo_cwnd`.
    fn undo_cwnd(&mut self, st: &CongState) -> u32 {
        tcp_reno_undo_cwnd(st)
    }
}

/// Reno / NewReno: slow start, then one segment per window per RTT; halve on loss.
/// (NewReno's recovery logic lives in the socket, not here.)
/// Linux: `tcp_reno` in net/ipv4/tcp_cong.c.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reno;

impl CongestionOps for Reno {
    fn name(&self) -> &'static str {
        "reno"
    }

    fn init(&mut self, _st: &mut CongState) {}

    /// Linux: `tcp_reno_ssthresh()`.
    fn ssthresh(&mut self, st: &CongState) -> u32 {
        tcp_reno_ssthresh(st)
    }

    /// Linux: `tcp_reno_cong_avoid()`.
    fn cong_avoid(&mut self, st: &mut CongState, acked: u32, _now_ms: u64, _rtt_us: Option<u32>) {
        if !st.is_cwnd_limited {
            return;
        }
        let mut acked = acked;
        // In "safe" area, increase.
        if tcp_in_slow_start(st) {
            acked = tcp_slow_start(st, acked);
            if acked == 0 {
                return;
            }
        }
        // In dangerous area, increase slowly.
        let w = st.cwnd;
        tcp_cong_avoid_ai(st, w, acked);
    }
}

pub use cubic::Cubic;

mod cubic {
    //! CUBIC (RFC 9438). Linux: net/ipv4/tcp_cubic.c.

    use super::{tcp_cong_avoid_ai, tcp_in_slow_start, tcp_slow_start, CaEvent, CaState, CongState, CongestionOps, HZ};

    /// `beta` is a fraction of this. Linux: `BICTCP_BETA_SCALE`.
    const BICTCP_BETA_SCALE: u32 = 1024;
    /// Time in the cubic function is in units of 2^-10 s. Linux: `BICTCP_HZ`.
    const BICTCP_HZ: u32 = 10;
    /// Multiplicative decrease 717/1024 ≈ 0.7. Linux module parameter `beta`.
    const BETA: u32 = 717;
    /// C = bic_scale * 10 / 1024 ≈ 0.4. Linux module parameter `bic_scale`.
    const BIC_SCALE: u32 = 41;
    /// Linux module parameter `fast_convergence`.
    const FAST_CONVERGENCE: bool = true;
    /// Linux module parameter `tcp_friendliness`.
    const TCP_FRIENDLINESS: bool = true;

    /// 8 * (1 + beta) / 3 / (1 - beta): ACKs (in units of cwnd / 8) for the
    /// emulated Reno window to grow by one. Linux: `beta_scale` (= 15).
    pub(super) const BETA_SCALE: u32 = 8 * (BICTCP_BETA_SCALE + BETA) / 3 / (BICTCP_BETA_SCALE - BETA);
    /// 1024 * C. Linux: `cube_rtt_scale` (= 410).
    pub(super) const CUBE_RTT_SCALE: u64 = BIC_SCALE as u64 * 10;
    /// 2^(10 + 3 * BICTCP_HZ) / (1024 * C), so that
    /// `K = cubic_root(cube_factor * (W_max - cwnd))` in 2^-10 s.
    /// Linux: `cube_factor`.
    pub(super) const CUBE_FACTOR: u64 = (1u64 << (10 + 3 * BICTCP_HZ)) / CUBE_RTT_SCALE;

    /// Floor of the cube root of `a`.
    ///
    /// Linux's `cubic_root()` uses a 64-entry table and one Newton step
    /// (about 0.2 % error); this is exact, by binary search over the 22-bit
    /// result. It runs once per congestion epoch, not per ACK.
    pub(super) fn cubic_root(a: u64) -> u32 {
        let (mut lo, mut hi) = (0u64, 1u64 << 22); // hi^3 > u64::MAX
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if (mid as u128).pow(3) <= a as u128 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo as u32
    }

    /// `(s32)(a - b)` on 32-bit jiffies.
    #[inline]
    fn jdiff(a: u32, b: u32) -> i32 {
        a.wrapping_sub(b) as i32
    }

    /// CUBIC state. Linux: `struct bictcp`.
    ///
    /// HyStart (delay-based early exit from slow start) is omitted: it needs
    /// per-round ACK-train and delay tracking from the socket that blink's
    /// ops interface does not carry; slow start therefore ends at the first
    /// loss, as with `hystart=0`.
    ///
    /// `epoch_start` is an `Option` where Linux uses 0 for "no epoch", so a
    /// clock that starts at 0 (blink's virtual clock) is not ambiguous.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Cubic {
        /// Increase cwnd by 1 after this many ACKs.
        pub(super) cnt: u32,
        /// W_max: cwnd at the last loss (after fast convergence).
        pub(super) last_max_cwnd: u32,
        /// cwnd when `cnt` was last computed.
        pub(super) last_cwnd: u32,
        /// Jiffies when `cnt` was last computed.
        pub(super) last_time: u32,
        /// Origin point of the cubic function (W_max or current cwnd).
        pub(super) bic_origin_point: u32,
        /// K: time from epoch start to the origin point, in 2^-10 s.
        pub(super) bic_k: u32,
        /// Minimum RTT seen, µs (0: none yet).
        pub(super) delay_min: u32,
        /// Jiffies when the current epoch began.
        pub(super) epoch_start: Option<u32>,
        /// ACKed segments counted for the Reno-friendly window.
        pub(super) ack_cnt: u32,
        /// Estimated window of a Reno flow in the same conditions.
        pub(super) tcp_cwnd: u32,
    }

    impl Cubic {
        /// A fresh instance with Linux's default parameters.
        pub const fn new() -> Self {
            Cubic {
                cnt: 0,
                last_max_cwnd: 0,
                last_cwnd: 0,
                last_time: 0,
                bic_origin_point: 0,
                bic_k: 0,
                delay_min: 0,
                epoch_start: None,
                ack_cnt: 0,
                tcp_cwnd: 0,
            }
        }

        /// Linux: `bictcp_reset()`.
        fn reset(&mut self) {
            *self = Self::new();
        }

        /// Takes an RTT sample. Linux: `cubictcp_acked()` (without HyStart).
        fn acked(&mut self, now: u32, rtt_us: u32) {
            // Discard delay samples right after fast recovery.
            if let Some(es) = self.epoch_start {
                if jdiff(now, es) < HZ as i32 {
                    return;
                }
            }
            let delay = rtt_us.max(1);
            if self.delay_min == 0 || self.delay_min > delay {
                self.delay_min = delay;
            }
        }

        /// Computes `cnt`, the ACKs per +1 of cwnd, from the cubic function
        /// and the Reno-friendly window. Linux: `bictcp_update()`.
        fn update(&mut self, cwnd: u32, acked: u32, now: u32) {
            self.ack_cnt = self.ack_cnt.wrapping_add(acked);

            if self.last_cwnd == cwnd && jdiff(now, self.last_time) <= (HZ / 32) as i32 {
                return;
            }

            // The cubic function updates cnt at most once per jiffy; every
            // reduction clears epoch_start, which forces a recalculation.
            if self.epoch_start.is_none() || now != self.last_time {
                self.last_cwnd = cwnd;
                self.last_time = now;

                let epoch_start = match self.epoch_start {
                    Some(e) => e,
                    None => {
                        self.epoch_start = Some(now);
                        self.ack_cnt = acked;
                        self.tcp_cwnd = cwnd;
                        if self.last_max_cwnd <= cwnd {
                            self.bic_k = 0;
                            self.bic_origin_point = cwnd;
                        } else {
                            // K = cbrt((W_max - cwnd) / C), in 2^-10 s.
                            let d = (self.last_max_cwnd - cwnd) as u64;
                            self.bic_k = cubic_root(CUBE_FACTOR.saturating_mul(d));
                            self.bic_origin_point = self.last_max_cwnd;
                        }
                        now
                    }
                };

                // t = time since epoch start plus one minimum RTT (the
                // target is where cwnd should be one RTT from now), in 2^-10 s.
                let elapsed = jdiff(now, epoch_start).max(0) as u64;
                let min_rtt_j = self.delay_min.div_ceil(1000) as u64; // usecs_to_jiffies
                let t = ((elapsed + min_rtt_j) << BICTCP_HZ) / HZ as u64;
                let k = self.bic_k as u64;
                let offs = t.abs_diff(k) as u128;

                // C * (t - K)^3; u128 so long idle epochs cannot overflow
                // (Linux's u64 is safe only below about a million segments).
                let delta = ((CUBE_RTT_SCALE as u128 * offs * offs * offs) >> (10 + 3 * BICTCP_HZ)) as u64;
                let delta = delta.min(u32::MAX as u64) as u32;
                let bic_target = if t < k {
                    self.bic_origin_point.saturating_sub(delta)
                } else {
                    self.bic_origin_point.saturating_add(delta)
                };

                self.cnt = if bic_target > cwnd {
                    cwnd / (bic_target - cwnd)
                } else {
                    cwnd.saturating_mul(100) // very small increment
                };

                // The initial growth of the cubic function may be too
                // conservative when the available bandwidth is still unknown.
                if self.last_max_cwnd == 0 && self.cnt > 20 {
                    self.cnt = 20; // increase cwnd 5% per RTT
                }
            }

            // TCP friendliness: never grow slower than Reno would.
            if TCP_FRIENDLINESS {
                let delta = ((cwnd as u64 * BETA_SCALE as u64) >> 3).min(u32::MAX as u64) as u32;
                if delta != 0 && self.ack_cnt > delta {
                    let n = self.ack_cnt / delta;
                    self.ack_cnt -= n * delta;
                    self.tcp_cwnd = self.tcp_cwnd.saturating_add(n);
                }
                if self.tcp_cwnd > cwnd {
                    let max_cnt = cwnd / (self.tcp_cwnd - cwnd);
                    self.cnt = self.cnt.min(max_cnt);
                }
            }

            // At most 1 segment per 2 ACKed: cwnd grows at most 1.5x per RTT.
            self.cnt = self.cnt.max(2);
        }
    }

    impl CongestionOps for Cubic {
        fn name(&self) -> &'static str {
            "cubic"
        }

        /// Linux: `cubictcp_init()` (`initial_ssthresh` = 0: ssthresh stays
        /// as the socket set it).
        fn init(&mut self, _st: &mut CongState) {
            self.reset();
        }

        /// Ends the epoch and remembers W_max, with fast convergence: a flow
        /// whose window shrinks since the last loss releases bandwidth by
        /// lowering W_max further. Linux: `cubictcp_recalc_ssthresh()`.
        fn ssthresh(&mut self, st: &CongState) -> u32 {
            self.epoch_start = None;
            let cwnd = st.cwnd;
            self.last_max_cwnd = if cwnd < self.last_max_cwnd && FAST_CONVERGENCE {
                ((cwnd as u64 * (BICTCP_BETA_SCALE + BETA) as u64) / (2 * BICTCP_BETA_SCALE) as u64) as u32
            } else {
                cwnd
            };
            (((cwnd as u64 * BETA as u64) / BICTCP_BETA_SCALE as u64) as u32).max(2)
        }

        /// Linux: `cubictcp_cong_avoid()`, with `cubictcp_acked()` for the
        /// RTT sample.
        fn cong_avoid(&mut self, st: &mut CongState, acked: u32, now_ms: u64, rtt_us: Option<u32>) {
            let now = now_ms as u32; // tcp_jiffies32
            if let Some(rtt) = rtt_us {
                self.acked(now, rtt);
            }
            if !st.is_cwnd_limited {
                return;
            }
            let mut acked = acked;
            if tcp_in_slow_start(st) {
                acked = tcp_slow_start(st, acked);
                if acked == 0 {
                    return;
                }
            }
            self.update(st.cwnd, acked, now);
            let w = self.cnt;
            tcp_cong_avoid_ai(st, w, acked);
        }

        /// An RTO forgets everything, W_max and the minimum RTT included.
        /// Linux: `cubictcp_state()`.
        fn set_state(&mut self, _st: &mut CongState, state: CaState) {
            if state == CaState::Loss {
                self.reset();
            }
        }

        /// After application-limited idle time, shifts the epoch so cwnd
        /// resumes on the cubic curve where it left off instead of jumping.
        /// Linux: `cubictcp_cwnd_event()`.
        fn cwnd_event(&mut self, st: &mut CongState, ev: CaEvent) {
            if let CaEvent::TxStart { now_ms } = ev {
                let now = now_ms as u32;
                let delta = jdiff(now, st.lsndtime as u32);
                if let Some(es) = self.epoch_start {
                    if delta > 0 {
                        let mut es = es.wrapping_add(delta as u32);
                        if jdiff(es, now) > 0 {
                            es = now;
                        }
                        self.epoch_start = Some(es);
                    }
                }
            }
        }
    }
}

/// A socket's congestion control. Linux keeps a pointer to the algorithm's ops and its
/// private state inside the socket (`icsk_ca_ops`, `icsk_ca_priv`), so a connection
/// allocates nothing for it; here too the built-in algorithms sit inline in the socket, and
/// only an algorithm from outside blink (`Custom`) is boxed. A connection used to allocate
/// (and free) its CUBIC state, twice per connection across both ends.
pub enum TcpCong {
    Reno(Reno),
    Cubic(Cubic),
    Custom(Box<dyn CongestionOps>),
}

/// Calls the same method on whichever algorithm `$cong` holds (a direct call for the
/// built-ins, a virtual one for `Custom`).
macro_rules! each_cong {
    ($cong:expr, $c:ident => $call:expr) => {
        match $cong {
            TcpCong::Reno($c) => $call,
            TcpCong::Cubic($c) => $call,
            TcpCong::Custom($c) => $call,
        }
    };
}

impl CongestionOps for TcpCong {
    fn name(&self) -> &'static str {
        each_cong!(self, c => c.name())
    }

    fn init(&mut self, st: &mut CongState) {
        each_cong!(self, c => c.init(st))
    }

    fn ssthresh(&mut self, st: &CongState) -> u32 {
        each_cong!(self, c => c.ssthresh(st))
    }

    fn cong_avoid(&mut self, st: &mut CongState, acked: u32, now_ms: u64, rtt_us: Option<u32>) {
        each_cong!(self, c => c.cong_avoid(st, acked, now_ms, rtt_us))
    }

    fn set_state(&mut self, st: &mut CongState, state: CaState) {
        each_cong!(self, c => c.set_state(st, state))
    }

    fn cwnd_event(&mut self, st: &mut CongState, ev: CaEvent) {
        each_cong!(self, c => c.cwnd_event(st, ev))
    }

    fn undo_cwnd(&mut self, st: &CongState) -> u32 {
        each_cong!(self, c => c.undo_cwnd(st))
    }
}

/// The congestion control called `name`: "cubic", or "reno" (alias
/// "newreno"). Linux: `tcp_ca_find()` + `tcp_set_congestion_control()`.
pub fn cong_by_name(name: &str) -> Option<TcpCong> {
    match name {
        "cubic" => Some(TcpCong::Cubic(Cubic::new())),
        "reno" | "newreno" => Some(TcpCong::Reno(Reno)),
        _ => None,
    }
}

/// The default congestion control, [`TCP_CONG_DEFAULT`].
pub fn cong_default() -> TcpCong {
    TcpCong::Cubic(Cubic::new())
}

#[cfg(test)]
mod tests {
    use super::cubic::cubic_root;
    use super::*;

    /// One RTT in which every segment of the window is ACKed, one ACK per
    /// segment, spread evenly over `rtt_ms` starting at `*now`.
    fn one_rtt(ops: &mut dyn CongestionOps, st: &mut CongState, now: &mut u64, rtt_ms: u64) {
        let n = st.cwnd as u64;
        let start = *now;
        for i in 0..n {
            ops.cong_avoid(st, 1, start + i * rtt_ms / n, Some(rtt_ms as u32 * 1000));
        }
        *now = start + rtt_ms;
    }

    /// What the socket does on a fast-retransmit loss, with PRR finished:
    /// ssthresh from the ops, cwnd down to it, back to Open.
    fn fast_loss(ops: &mut dyn CongestionOps, st: &mut CongState) {
        st.prior_cwnd = st.cwnd;
        st.ssthresh = ops.ssthresh(st);
        tcp_set_ca_state(ops, st, CaState::Recovery);
        st.cwnd = st.ssthresh;
        st.cwnd_cnt = 0;
        ops.cwnd_event(st, CaEvent::CompleteCwr);
        tcp_set_ca_state(ops, st, CaState::Open);
    }

    #[test]
    fn reno_slow_start_doubles_then_stops_at_ssthresh() {
        let mut ops = Reno;
        let mut st = CongState::new();
        ops.init(&mut st);
        st.ssthresh = 80;
        let mut now = 0;
        let mut seen = vec![st.cwnd];
        for _ in 0..3 {
            one_rtt(&mut ops, &mut st, &mut now, 50);
            seen.push(st.cwnd);
        }
        assert_eq!(seen, [10, 20, 40, 80]);
        assert!(!tcp_in_slow_start(&st));
        // Congestion avoidance: +1 per window of ACKs.
        one_rtt(&mut ops, &mut st, &mut now, 50);
        assert_eq!(st.cwnd, 81);
        for _ in 0..9 {
            one_rtt(&mut ops, &mut st, &mut now, 50);
        }
        assert_eq!(st.cwnd, 90);
    }

    #[test]
    fn reno_slow_start_leftover_goes_to_avoidance() {
        let mut st = CongState {
            cwnd: 40,
            ssthresh: 50,
            ..CongState::new()
        };
        // 40 ACKs at once (a stretch ACK): 10 reach ssthresh, 30 are left.
        assert_eq!(tcp_slow_start(&mut st, 40), 30);
        assert_eq!(st.cwnd, 50);
        let mut ops = Reno;
        let mut st = CongState {
            cwnd: 40,
            ssthresh: 50,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 40, 0, None);
        assert_eq!((st.cwnd, st.cwnd_cnt), (50, 30));
        ops.cong_avoid(&mut st, 20, 0, None);
        assert_eq!((st.cwnd, st.cwnd_cnt), (51, 0));
        // A big stretch ACK in avoidance: +delta at once.
        ops.cong_avoid(&mut st, 51 * 3 + 5, 0, None);
        assert_eq!((st.cwnd, st.cwnd_cnt), (54, 5));
    }

    #[test]
    fn reno_limits() {
        let mut ops = Reno;
        // Not cwnd-limited: no growth.
        let mut st = CongState {
            is_cwnd_limited: false,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 5, 0, None);
        assert_eq!(st.cwnd, 10);
        // The clamp holds in both phases.
        let mut st = CongState {
            cwnd_clamp: 12,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 5, 0, None);
        assert_eq!(st.cwnd, 12);
        st.ssthresh = 5;
        ops.cong_avoid(&mut st, 100, 0, None);
        assert_eq!(st.cwnd, 12);
        // ssthresh halves, at least 2; undo goes back to prior_cwnd.
        for (cwnd, want) in [(81, 40), (100, 50), (5, 2), (3, 2), (1, 2), (0, 2)] {
            let st = CongState {
                cwnd,
                ..CongState::new()
            };
            assert_eq!(ops.ssthresh(&st), want, "cwnd {cwnd}");
        }
        let st = CongState {
            cwnd: 20,
            prior_cwnd: 64,
            ..CongState::new()
        };
        assert_eq!(ops.undo_cwnd(&st), 64);
        // A zero window with cwnd_cnt credits does not divide by zero.
        let mut st = CongState {
            cwnd: 0,
            ssthresh: 0,
            cwnd_cnt: 3,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 1, 0, None);
        assert!(st.cwnd >= 1);
    }

    #[test]
    fn reno_sawtooth() {
        let mut ops = Reno;
        let mut st = CongState::new();
        let mut now = 0;
        while st.cwnd < 100 {
            one_rtt(&mut ops, &mut st, &mut now, 10);
        }
        assert_eq!(st.cwnd, 160); // 10 -> 20 -> 40 -> 80 -> 160
        fast_loss(&mut ops, &mut st);
        assert_eq!((st.ssthresh, st.cwnd), (80, 80));
        one_rtt(&mut ops, &mut st, &mut now, 10);
        assert_eq!(st.cwnd, 81);
        assert_eq!(st.ca_state, CaState::Open);
    }

    #[test]
    fn cubic_root_exact() {
        for a in [0u64, 1, 7, 8, 9, 26, 27, 63, 64, 999, 1000, 1001] {
            let r = cubic_root(a) as u64;
            assert!(r.pow(3) <= a && (r + 1).pow(3) > a, "{a}");
        }
        for r in [2u64, 3, 100, 12345, 1 << 20, 2_642_245] {
            assert_eq!(cubic_root(r.pow(3)) as u64, r);
            assert_eq!(cubic_root(r.pow(3) - 1) as u64, r - 1);
        }
        assert_eq!(cubic_root(u64::MAX), 2_642_245);
    }

    #[test]
    fn cubic_constants_match_linux() {
        // As computed in cubictcp_register() with the default parameters.
        assert_eq!(super::cubic::BETA_SCALE, 15);
        assert_eq!(super::cubic::CUBE_RTT_SCALE, 410);
        assert_eq!(super::cubic::CUBE_FACTOR, 2_681_735_677); // 2^40 / 410
    }

    /// W(t) = C (t - K)^3 + W_max, t and K in seconds, C = 0.4.
    fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
        0.4 * (t - k).powi(3) + w_max
    }

    #[test]
    fn cubic_loss_recovery_shape() {
        const RTT: u64 = 100;
        let mut ops = Cubic::new();
        let mut st = CongState::new();
        ops.init(&mut st);
        st.ssthresh = 1000;
        let mut now = 1_000u64;

        // Slow start (delay_min learned here) until cwnd reaches W_max = 1000;
        // the loss is detected on the ACK that takes cwnd there.
        'ss: loop {
            let n = st.cwnd as u64;
            for i in 0..n {
                ops.cong_avoid(&mut st, 1, now + i * RTT / n, Some(RTT as u32 * 1000));
                if st.cwnd >= 1000 {
                    now += i * RTT / n;
                    break 'ss;
                }
            }
            now += RTT;
        }
        assert_eq!(st.cwnd, 1000);
        assert_eq!(ops.delay_min, 100_000);

        fast_loss(&mut ops, &mut st);
        assert_eq!(ops.last_max_cwnd, 1000);
        assert_eq!(st.ssthresh, 700); // 1000 * 717 / 1024
        assert_eq!(st.cwnd, 700);

        // K = cbrt(W_max (1 - beta) / C) = cbrt(299.8 / 0.4) ≈ 9.08 s.
        let w_max = 1000.0;
        let beta = 717.0 / 1024.0;
        let k = (w_max * (1.0 - beta) / 0.4f64).cbrt();
        assert!((k - 9.08).abs() < 0.01, "K = {k}");

        // Congestion avoidance for 2K, sampling cwnd once per RTT.
        let epoch = now + RTT;
        now = epoch;
        let mut trace: Vec<(f64, u32)> = Vec::new();
        while ((now - epoch) as f64) < 2.0 * k * 1000.0 + 2.0 * RTT as f64 {
            trace.push(((now - epoch) as f64 / 1000.0, st.cwnd));
            one_rtt(&mut ops, &mut st, &mut now, RTT);
        }
        assert_eq!(ops.bic_k, 9300, "K in 2^-10 s: cbrt(2^40 / 410 * 300)");
        let at = |t: f64| -> u32 {
            trace
                .iter()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .unwrap()
                .1
        };

        // Follows the cubic curve within 1 % everywhere (0.15 % in practice:
        // the min-RTT offset in bictcp_update() cancels the one-RTT lag).
        for &(t, cwnd) in &trace {
            let w = w_cubic(t, k, w_max);
            let err = (cwnd as f64 - w).abs() / w;
            assert!(err < 0.01, "t {t:.1}s: cwnd {cwnd}, W(t) {w:.0}");
        }

        // Concave growth towards W_max: fast at first, flattening near K.
        let (c0, c_half, c_k) = (at(0.0), at(k / 2.0), at(k));
        assert_eq!(c0, 700);
        assert!((955..=970).contains(&c_half), "cwnd at K/2 = {c_half}"); // W = 962.5
        assert!((995..=1005).contains(&c_k), "cwnd at K = {c_k}");
        assert!(c_half - c0 > 5 * (c_k - c_half), "concave: {c0} {c_half} {c_k}");
        // Plateau: within 5 segments of W_max for a whole second around K.
        for &(t, cwnd) in trace.iter().filter(|(t, _)| (t - k).abs() < 0.5) {
            assert!(cwnd.abs_diff(1000) <= 5, "t {t:.1}s: {cwnd}");
        }

        // Convex beyond W_max: slow at first, then accelerating probing.
        let (c_15, c_2) = (at(1.5 * k), at(2.0 * k));
        assert!((1030..=1045).contains(&c_15), "cwnd at 1.5K = {c_15}"); // W = 1037.5
        assert!((1285..=1315).contains(&c_2), "cwnd at 2K = {c_2}"); // W = 1299.8
        assert!(c_2 - c_15 > 5 * (c_15 - c_k), "convex: {c_k} {c_15} {c_2}");

        // Monotonic: CUBIC never shrinks cwnd without a loss.
        assert!(trace.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn cubic_fast_convergence() {
        let mut ops = Cubic::new();
        let mut st = CongState {
            cwnd: 1000,
            ..CongState::new()
        };
        fast_loss(&mut ops, &mut st);
        assert_eq!((ops.last_max_cwnd, st.cwnd), (1000, 700));
        // A second loss below the previous W_max lowers W_max further:
        // 900 * (1 + beta) / 2.
        st.cwnd = 900;
        fast_loss(&mut ops, &mut st);
        assert_eq!(ops.last_max_cwnd, 900 * (1024 + 717) / 2048);
        assert_eq!(st.cwnd, 900 * 717 / 1024);
        // Small windows: ssthresh at least 2.
        st.cwnd = 2;
        assert_eq!(ops.ssthresh(&st), 2);
    }

    #[test]
    fn cubic_rto_resets_and_starts_gently() {
        let mut ops = Cubic::new();
        let mut st = CongState {
            cwnd: 400,
            ssthresh: 300,
            ..CongState::new()
        };
        let mut now = 5_000;
        for _ in 0..20 {
            one_rtt(&mut ops, &mut st, &mut now, 50);
        }
        // RTO: ssthresh first, then the Loss state resets CUBIC (W_max too).
        st.prior_cwnd = st.cwnd;
        st.ssthresh = ops.ssthresh(&st);
        ops.cwnd_event(&mut st, CaEvent::Loss);
        tcp_set_ca_state(&mut ops, &mut st, CaState::Loss);
        st.cwnd = 1;
        assert_eq!(ops.last_max_cwnd, 0);
        assert_eq!(ops.delay_min, 0);
        assert!(ops.epoch_start.is_none());
        let ssthresh = st.ssthresh;
        tcp_set_ca_state(&mut ops, &mut st, CaState::Open);
        while tcp_in_slow_start(&st) {
            one_rtt(&mut ops, &mut st, &mut now, 50);
        }
        // Unknown W_max: at most 5 % per RTT (cnt capped at 20), also for
        // the ACKs left over when slow start ended mid-RTT.
        assert!(
            st.cwnd >= ssthresh && st.cwnd <= ssthresh + ssthresh / 20 + 1,
            "{ssthresh} {}",
            st.cwnd
        );
        let before = st.cwnd;
        one_rtt(&mut ops, &mut st, &mut now, 50);
        let grew = st.cwnd - before;
        assert!(grew >= 1 && grew <= before / 20 + 1, "{before} -> {}", st.cwnd);
        // Spurious RTO: undo to prior_cwnd.
        assert_eq!(ops.undo_cwnd(&st), st.prior_cwnd);
    }

    #[test]
    fn cubic_idle_shifts_epoch() {
        let mut ops = Cubic::new();
        let mut st = CongState {
            cwnd: 100,
            ssthresh: 100,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 1, 10_000, None);
        assert_eq!(ops.epoch_start, Some(10_000));
        // Last send at 12 s, restart at 15 s: the 3 s idle shifts the epoch.
        st.lsndtime = 12_000;
        ops.cwnd_event(&mut st, CaEvent::TxStart { now_ms: 15_000 });
        assert_eq!(ops.epoch_start, Some(13_000));
        // Never beyond now.
        st.lsndtime = 0;
        ops.cwnd_event(&mut st, CaEvent::TxStart { now_ms: 16_000 });
        assert_eq!(ops.epoch_start, Some(16_000));
        // No epoch, no shift.
        let mut fresh = Cubic::new();
        fresh.cwnd_event(&mut st, CaEvent::TxStart { now_ms: 1 });
        assert!(fresh.epoch_start.is_none());
    }

    #[test]
    fn cubic_not_cwnd_limited_and_extremes() {
        let mut ops = Cubic::new();
        let mut st = CongState {
            is_cwnd_limited: false,
            ..CongState::new()
        };
        ops.cong_avoid(&mut st, 5, 0, Some(1));
        assert_eq!(st.cwnd, 10);
        // Huge windows and long idle epochs do not overflow or panic.
        let mut st = CongState {
            cwnd: u32::MAX / 2,
            ssthresh: 1,
            ..CongState::new()
        };
        ops.last_max_cwnd = u32::MAX;
        ops.cong_avoid(&mut st, 1000, 0, None);
        ops.cong_avoid(&mut st, 1000, 3_000_000_000, None);
        ops.cong_avoid(&mut st, u32::MAX, 3_000_000_001, Some(u32::MAX));
        assert!(st.cwnd >= u32::MAX / 2);
        let _ = ops.ssthresh(&st);
    }

    #[test]
    fn by_name() {
        assert_eq!(cong_by_name("cubic").unwrap().name(), "cubic");
        assert_eq!(cong_by_name("reno").unwrap().name(), "reno");
        assert_eq!(cong_by_name("newreno").unwrap().name(), "reno");
        assert!(cong_by_name("bbr").is_none());
        assert_eq!(cong_default().name(), TCP_CONG_DEFAULT);
        // The socket's ops drive its state like the concrete types, inline or boxed.
        for mut ops in [
            cong_by_name(TCP_CONG_DEFAULT).unwrap(),
            TcpCong::Custom(Box::new(Cubic::new())),
        ] {
            let mut st = CongState::new();
            ops.init(&mut st);
            ops.cong_avoid(&mut st, 10, 0, None);
            assert_eq!(st.cwnd, 20);
            assert_eq!(ops.name(), "cubic");
        }
    }
}
