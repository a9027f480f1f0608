// @ts-check
/* Counters from getStats() for the page hook window.classroomStats() (DESIGN.md "Page hooks
 * for automated browsers"): StatsTotals keeps per-page totals that never go backwards across
 * reconnects; rtpCounts reads one sender's or receiver's own counters.
 */

/**
 * @typedef {object} Counts
 * @property {number} framesDecoded inbound video
 * @property {number} audioBytesReceived inbound audio
 * @property {number} framesEncoded outbound video
 * @property {number} audioBytesSent outbound audio
 */
/**
 * The selected ICE candidate pair: who relays (TURN) and how.
 * @typedef {object} CandidatePair
 * @property {string | null} localType
 * @property {string | null} remoteType
 * @property {string | null} relayProtocol udp | tcp | tls: browser to TURN
 * @property {boolean} relayed
 */
/**
 * @typedef {object} RtpCounts
 * @property {number} framesDecoded
 * @property {number} bytesReceived
 * @property {number} packetsReceived
 * @property {number} framesEncoded
 * @property {number} bytesSent
 */

/** @returns {Counts} */
function zeroCounts() {
  return { framesDecoded: 0, audioBytesReceived: 0, framesEncoded: 0, audioBytesSent: 0 };
}

/** @type {(keyof Counts)[]} */
const COUNT_KEYS = ["framesDecoded", "audioBytesReceived", "framesEncoded", "audioBytesSent"];

/**
 * The selected candidate pair of a getStats() report.
 * @param {RTCStatsReport} report @returns {CandidatePair | null}
 */
export function selectedPair(report) {
  /** @type {string | null} */
  let pairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pairId = s.selectedCandidatePairId;
    }
  });
  const pair = pairId ? report.get(pairId) : null;
  if (!pair) {
    return null;
  }
  const local = report.get(pair.localCandidateId) || {};
  const remote = report.get(pair.remoteCandidateId) || {};
  return {
    localType: local.candidateType || null,
    remoteType: remote.candidateType || null,
    relayProtocol: local.relayProtocol || null,
    relayed: local.candidateType === "relay" || remote.candidateType === "relay"
  };
}

/**
 * Running totals of inbound video framesDecoded and inbound audio bytesReceived (and, for a
 * publisher, outbound framesEncoded and audio bytesSent) over every peer connection the
 * page has had. A connection's last known figures are folded into the base when it is
 * retired, so the totals never go backwards.
 */
export class StatsTotals {
  constructor() {
    this.base = zeroCounts();
    /** @type {Map<RTCPeerConnection, Counts>} */
    this.live = new Map();
    /** @type {Map<RTCPeerConnection, CandidatePair | null>} */
    this.pairs = new Map();
  }

  /** The selected candidate pair of `pc` at its last poll (null before one). @param {RTCPeerConnection} pc */
  candidate(pc) {
    return (pc && this.pairs.get(pc)) || null;
  }

  /** @param {RTCPeerConnection} pc */
  track(pc) {
    if (!this.live.has(pc)) {
      this.live.set(pc, zeroCounts());
    }
  }

  /**
   * Refresh one connection's figures from getStats(); resolves to its counts (or null).
   * @param {RTCPeerConnection} pc @returns {Promise<Counts | null>}
   */
  poll(pc) {
    const counts = this.live.get(pc);
    if (!counts) {
      return Promise.resolve(null);
    }
    return pc.getStats().then(
      (report) => {
        const now = zeroCounts();
        report.forEach((s) => {
          const kind = s.kind || s.mediaType;
          if (s.type === "inbound-rtp") {
            if (kind === "video") {
              now.framesDecoded += s.framesDecoded || 0;
            } else if (kind === "audio") {
              now.audioBytesReceived += s.bytesReceived || 0;
            }
          } else if (s.type === "outbound-rtp") {
            if (kind === "video") {
              now.framesEncoded += s.framesEncoded || 0;
            } else if (kind === "audio") {
              now.audioBytesSent += s.bytesSent || 0;
            }
          }
        });
        if (this.live.has(pc)) {
          this.pairs.set(pc, selectedPair(report));
        }
        for (const key of COUNT_KEYS) {
          counts[key] = Math.max(counts[key], now[key]);
        }
        return counts;
      },
      () => counts
    );
  }

  /** Take a last reading, fold it into the base, then close the connection. @param {RTCPeerConnection} pc */
  retire(pc) {
    const finish = () => {
      const counts = this.live.get(pc);
      if (counts) {
        for (const key of COUNT_KEYS) {
          this.base[key] += counts[key];
        }
        this.live.delete(pc);
        this.pairs.delete(pc);
      }
      try {
        pc.close();
      } catch (e) {
        /* ignore */
      }
    };
    const timeout = new Promise((resolve) => setTimeout(resolve, 1000));
    return Promise.race([this.poll(pc), timeout]).then(finish, finish);
  }

  /** @returns {Counts} */
  totals() {
    const sum = { ...this.base };
    this.live.forEach((counts) => {
      for (const key of COUNT_KEYS) {
        sum[key] += counts[key];
      }
    });
    return sum;
  }
}

/**
 * One receiver's or sender's counters from its own getStats(): frames and bytes.
 * @param {RTCRtpSender | RTCRtpReceiver | null | undefined} senderOrReceiver
 * @returns {Promise<RtpCounts>}
 */
export function rtpCounts(senderOrReceiver) {
  const zero = { framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, framesEncoded: 0, bytesSent: 0 };
  if (!senderOrReceiver || !senderOrReceiver.getStats) {
    return Promise.resolve(zero);
  }
  return senderOrReceiver.getStats().then(
    (report) => {
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          zero.framesDecoded += s.framesDecoded || 0;
          zero.bytesReceived += s.bytesReceived || 0;
          zero.packetsReceived += s.packetsReceived || 0;
        } else if (s.type === "outbound-rtp") {
          zero.framesEncoded += s.framesEncoded || 0;
          zero.bytesSent += s.bytesSent || 0;
        }
      });
      return zero;
    },
    () => zero
  );
}
