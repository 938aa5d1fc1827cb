/* blink's C shim over DPDK 22.11: what bindgen cannot bind.
 *
 * DPDK's fast-path functions (rx/tx burst, mbuf alloc/free/refcount, ring enqueue/dequeue,
 * lcore id) are `static inline` in its headers, so they have no symbol to link against. Each
 * wrapper here is a one-line forwarder compiled into the crate by build.rs (the `cc` crate).
 * Field accessors for `struct rte_mbuf` live here too: its layout has anonymous unions and
 * bitfields (l2_len/l3_len/...) that are far easier to get right in C than through bindgen's
 * generated bitfield setters.
 */
#ifndef BLINK_DPDK_SHIM_H
#define BLINK_DPDK_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_version.h>

uint16_t blink_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t blink_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t blink_rte_eth_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

struct rte_mbuf *blink_rte_pktmbuf_alloc(struct rte_mempool *mp);
void blink_rte_pktmbuf_free(struct rte_mbuf *m);
void blink_rte_pktmbuf_free_seg(struct rte_mbuf *m);
void blink_rte_pktmbuf_attach(struct rte_mbuf *mi, struct rte_mbuf *m);
uint16_t blink_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);
uint16_t blink_rte_mbuf_refcnt_read(const struct rte_mbuf *m);

/* What a received segment carries, read in one call. */
struct blink_rx_info {
	void *buf_addr;
	struct rte_mbuf *next;
	uint64_t ol_flags;
	uint32_t pkt_len;
	uint32_t rss_hash;
	uint16_t buf_len;
	uint16_t data_off;
	uint16_t data_len;
	uint16_t nb_segs;
};
void blink_rte_mbuf_rx_info(const struct rte_mbuf *m, struct blink_rx_info *out);

/* Set one segment's data window and chain link. */
void blink_rte_mbuf_set_seg(struct rte_mbuf *m, uint16_t data_off, uint16_t data_len, struct rte_mbuf *next);
void blink_rte_mbuf_set_seg_next(struct rte_mbuf *m, struct rte_mbuf *next);
/* Set the first segment's packet fields: total length, segment count, offload flags and header
 * lengths (what the PMD reads to fill checksums). */
void blink_rte_mbuf_set_pkt(struct rte_mbuf *m, uint32_t pkt_len, uint16_t nb_segs, uint64_t ol_flags, uint8_t l2_len,
			    uint16_t l3_len, uint8_t l4_len);
void *blink_rte_mbuf_buf_addr(const struct rte_mbuf *m);
/* Byte offset of the private area (priv_size bytes right after struct rte_mbuf). */
uint32_t blink_rte_mbuf_priv_offset(void);

unsigned blink_rte_lcore_id(void);
int blink_rte_errno(void);

unsigned blink_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned blink_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);

#endif
