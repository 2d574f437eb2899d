package ui

import (
	"strings"
	"testing"

	"github.com/autoprof/autoprof/callgraph"
)

// modulesDep is a few lines of Debian 6.1's modules.dep.
const modulesDep = `kernel/fs/ext4/ext4.ko.xz: kernel/fs/mbcache.ko.xz kernel/fs/jbd2/jbd2.ko.xz
kernel/net/ipv4/tcp_bbr.ko.xz:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz:
kernel/mm/zsmalloc.ko.xz:
kernel/crypto/crc32c_generic.ko.xz:
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz
`

func TestGroup(t *testing.T) {
	g := NewGrouper(strings.NewReader(modulesDep))
	for _, c := range []struct {
		name, module, want string
	}{
		{"__x64_sys_read", "", GroupSyscalls},
		{"__x64_sys_getppid", "", GroupSyscalls},
		{"__ia32_sys_read", "", GroupSyscalls}, // instrument.IsSyscall64: 64-bit dispatch serves some through it
		{"tcp_sendmsg", "", GroupNet},
		{"__sys_sendto", "", GroupNet},
		{"vfs_read", "", GroupFS},
		{"__vfs_getxattr", "", GroupFS},
		{"pipe_read", "", GroupIPC},
		{"do_msgsnd", "", GroupIPC},
		{"__alloc_pages", "", GroupMM},
		{"handle_mm_fault", "", GroupMM},
		{"pci_read_config_word", "", GroupDrivers},
		{"raw_spin_rq_lock_nested", "", GroupOther},
		{"rt_mutex_lock", "", GroupOther},
		{"isolate_lru_folios", "", GroupOther},
		{"schedule", "", GroupOther},
		{"ext4_file_read_iter", "ext4", GroupFS},
		{"bbr_main", "tcp_bbr", GroupNet},
		{"e1000_xmit_frame", "e1000", GroupDrivers},
		{"zs_malloc", "zsmalloc", GroupMM},
		{"virtblk_probe", "virtio_blk", GroupDrivers},
		{"crc32c_update", "crc32c_generic", GroupDrivers}, // crypto/: no group of its own, a module
		{"nft_do_chain", "nf_tables", GroupNet},           // not in modules.dep: by its name
		{"foo", "some_out_of_tree", GroupDrivers},
	} {
		if got := g.Group(callgraph.Symbol{Name: c.name, Module: c.module, Type: 'T'}); got != c.want {
			t.Errorf("%s [%s]: %q, want %q", c.name, c.module, got, c.want)
		}
	}
	if got := NewGrouper(nil).Group(callgraph.Symbol{Name: "ext4_file_read_iter", Module: "ext4"}); got != GroupFS {
		t.Errorf("ext4 without modules.dep: %q, want %q by its name", got, GroupFS)
	}
}
