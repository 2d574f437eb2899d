//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// read_text copies kernel memory into a map with bpf_probe_read_kernel. It
// is never attached: user space runs it with BPF_PROG_TEST_RUN, passing the
// address and length as the two raw tracepoint arguments. This is how
// autoprof reads live kernel text where /proc/kcore is missing.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define CHUNK 4096

struct chunk {
	__u8 data[CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct chunk);
} chunks SEC(".maps");

SEC("raw_tracepoint")
int read_text(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 addr = ctx->args[0];
	__u64 len = ctx->args[1];
	__u32 key = 0;
	struct chunk *c;

	if (len == 0 || len > CHUNK)
		return 1;
	c = bpf_map_lookup_elem(&chunks, &key);
	if (!c)
		return 2;
	if (bpf_probe_read_kernel(c->data, len, (void *)addr))
		return 3;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
