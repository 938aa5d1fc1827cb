/* See shim.h: forwarders for DPDK's static-inline functions. */
#include "shim.h"

/* The Rust side mirrors a few RTE_* flags as constants (bindgen cannot evaluate RTE_BIT64()):
 * these assertions fail the build if a DPDK release ever changes them. */
_Static_assert(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM == (1ULL << 1), "rx ipv4 cksum bit");
_Static_assert(RTE_ETH_RX_OFFLOAD_UDP_CKSUM == (1ULL << 2), "rx udp cksum bit");
_Static_assert(RTE_ETH_RX_OFFLOAD_TCP_CKSUM == (1ULL << 3), "rx tcp cksum bit");
_Static_assert(RTE_ETH_RX_OFFLOAD_RSS_HASH == (1ULL << 19), "rx rss hash bit");
_Static_assert(RTE_ETH_TX_OFFLOAD_IPV4_CKSUM == (1ULL << 1), "tx ipv4 cksum bit");
_Static_assert(RTE_ETH_TX_OFFLOAD_UDP_CKSUM == (1ULL << 2), "tx udp cksum bit");
_Static_assert(RTE_ETH_TX_OFFLOAD_TCP_CKSUM == (1ULL << 3), "tx tcp cksum bit");
_Static_assert(RTE_ETH_TX_OFFLOAD_TCP_TSO == (1ULL << 5), "tx tso bit");
_Static_assert(RTE_ETH_TX_OFFLOAD_MULTI_SEGS == (1ULL << 15), "tx multi segs bit");
_Static_assert(RTE_ETH_RSS_IPV4 == (1ULL << 2), "rss ipv4 bit");
_Static_assert(RTE_ETH_RSS_FRAG_IPV4 == (1ULL << 3), "rss frag ipv4 bit");
_Static_assert(RTE_ETH_RSS_NONFRAG_IPV4_TCP == (1ULL << 4), "rss ipv4 tcp bit");
_Static_assert(RTE_ETH_RSS_NONFRAG_IPV4_UDP == (1ULL << 5), "rss ipv4 udp bit");
_Static_assert(RTE_ETH_RSS_NONFRAG_IPV4_OTHER == (1ULL << 7), "rss ipv4 other bit");
_Static_assert(RTE_MBUF_F_RX_RSS_HASH == (1ULL << 1), "rx rss flag");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_MASK == ((1ULL << 4) | (1ULL << 7)), "rx ip cksum mask");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_GOOD == (1ULL << 7), "rx ip cksum good");
_Static_assert(RTE_MBUF_F_RX_IP_CKSUM_BAD == (1ULL << 4), "rx ip cksum bad");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_MASK == ((1ULL << 3) | (1ULL << 8)), "rx l4 cksum mask");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_GOOD == (1ULL << 8), "rx l4 cksum good");
_Static_assert(RTE_MBUF_F_RX_L4_CKSUM_BAD == (1ULL << 3), "rx l4 cksum bad");
_Static_assert(RTE_MBUF_F_TX_TCP_CKSUM == (1ULL << 52), "tx tcp cksum flag");
_Static_assert(RTE_MBUF_F_TX_UDP_CKSUM == (3ULL << 52), "tx udp cksum flag");
_Static_assert(RTE_MBUF_F_TX_IP_CKSUM == (1ULL << 54), "tx ip cksum flag");
_Static_assert(RTE_MBUF_F_TX_IPV4 == (1ULL << 55), "tx ipv4 flag");
_Static_assert(sizeof(struct rte_mbuf) == 128, "rte_mbuf is two cache lines");

uint16_t blink_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t blink_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

uint16_t blink_rte_eth_tx_prepare(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_prepare(port, queue, pkts, n);
}

struct rte_mbuf *blink_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void blink_rte_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void blink_rte_pktmbuf_free_seg(struct rte_mbuf *m)
{
	rte_pktmbuf_free_seg(m);
}

void blink_rte_pktmbuf_attach(struct rte_mbuf *mi, struct rte_mbuf *m)
{
	rte_pktmbuf_attach(mi, m);
}

uint16_t blink_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	return rte_mbuf_refcnt_update(m, value);
}

uint16_t blink_rte_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

void blink_rte_mbuf_rx_info(const struct rte_mbuf *m, struct blink_rx_info *out)
{
	out->buf_addr = m->buf_addr;
	out->next = m->next;
	out->ol_flags = m->ol_flags;
	out->pkt_len = m->pkt_len;
	out->rss_hash = m->hash.rss;
	out->buf_len = m->buf_len;
	out->data_off = m->data_off;
	out->data_len = m->data_len;
	out->nb_segs = m->nb_segs;
}

void blink_rte_mbuf_set_seg(struct rte_mbuf *m, uint16_t data_off, uint16_t data_len, struct rte_mbuf *next)
{
	m->data_off = data_off;
	m->data_len = data_len;
	m->next = next;
}

void blink_rte_mbuf_set_seg_next(struct rte_mbuf *m, struct rte_mbuf *next)
{
	m->next = next;
}

void blink_rte_mbuf_set_pkt(struct rte_mbuf *m, uint32_t pkt_len, uint16_t nb_segs, uint64_t ol_flags, uint8_t l2_len,
			    uint16_t l3_len, uint8_t l4_len)
{
	m->pkt_len = pkt_len;
	m->nb_segs = nb_segs;
	/* Keep the attach state: an indirect mbuf that lost RTE_MBUF_F_INDIRECT would go back to the
	 * pool without releasing the direct mbuf it points into. */
	m->ol_flags = (m->ol_flags & (RTE_MBUF_F_INDIRECT | RTE_MBUF_F_EXTERNAL)) | ol_flags;
	m->l2_len = l2_len;
	m->l3_len = l3_len;
	m->l4_len = l4_len;
}

void *blink_rte_mbuf_buf_addr(const struct rte_mbuf *m)
{
	return m->buf_addr;
}

uint32_t blink_rte_mbuf_priv_offset(void)
{
	return sizeof(struct rte_mbuf);
}

unsigned blink_rte_lcore_id(void)
{
	return rte_lcore_id();
}

int blink_rte_errno(void)
{
	return rte_errno;
}

unsigned blink_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned blink_rte_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}
