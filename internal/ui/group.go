package ui

import (
	"bufio"
	"io"
	"path"
	"strings"

	"github.com/autoprof/autoprof/callgraph"
	"github.com/autoprof/autoprof/internal/instrument"
)

// The groups of the symbol table, GILK's: the kernel's subsystems as its
// source tree divides them.
const (
	GroupSyscalls = "system calls"
	GroupNet      = "network"
	GroupFS       = "file systems"
	GroupDrivers  = "drivers"
	GroupIPC      = "IPC"
	GroupMM       = "memory management"
	GroupOther    = "other"
)

// Groups lists every group in the order the page shows them.
var Groups = []string{GroupSyscalls, GroupNet, GroupFS, GroupDrivers, GroupIPC, GroupMM, GroupOther}

// sourceDirs maps the first directory of a module's path below
// /lib/modules/RELEASE/kernel (modules.dep) to its group.
var sourceDirs = map[string]string{
	"net": GroupNet, "fs": GroupFS, "drivers": GroupDrivers, "sound": GroupDrivers,
	"ipc": GroupIPC, "mm": GroupMM,
}

// namePrefixes are the prefixes that name a core kernel function's
// subsystem (the kernel has no section per subsystem, and kallsyms no
// source file): the first match, in order, wins. A module that
// modules.dep does not place is grouped by its name under the same rules,
// and among the drivers where none matches.
var namePrefixes = []struct {
	group    string
	prefixes []string
}{
	{GroupIPC, []string{"ipc_", "sysvipc_", "do_msg", "msg_", "do_msgsnd", "do_msgrcv", "ksys_msg", "ksys_sem", "ksys_shm", "sem_", "do_semtimedop",
		"shm_", "do_shm", "newque", "newseg", "newary", "mq_", "do_mq_", "pipe_", "anon_pipe", "create_pipe_files", "do_pipe", "free_pipe_info", "eventfd_", "futex_", "__futex"}},
	{GroupNet, []string{"tcp_", "udp_", "udpv6_", "ip_", "ipv4_", "ipv6_", "ip6_", "inet_", "inet6_", "sock_", "__sock_", "sk_", "__sk_", "skb_", "__skb_", "kfree_skb",
		"consume_skb", "alloc_skb", "__alloc_skb", "netif_", "__netif_", "net_", "netdev_", "dev_queue_xmit", "__dev_queue_xmit", "dev_hard_start_xmit", "napi_",
		"__napi_", "neigh_", "netlink_", "__netlink_", "nf_", "nft_", "xt_", "xfrm", "rtnl_", "packet_", "unix_", "raw_v4", "raw_v6", "icmp", "arp_", "fib_", "fib6_",
		"__sys_send", "__sys_recv", "__sys_socket", "__sys_connect", "__sys_accept", "__sys_bind", "__sys_listen", "sys_socket", "sockfd_", "__inet", "tcp4_", "tcp6_", "qdisc_", "__qdisc", "tc_", "bpf_sk", "xdp_", "dst_", "ip_route", "rt6_", "br_", "vlan_", "nla_", "genl_"}},
	{GroupFS, []string{"vfs_", "do_vfs_", "do_sys_open", "do_filp_open", "ext4_", "ext2_", "jbd2_", "xfs_", "btrfs_", "fat_", "vfat_", "nfs_", "nfsd_", "proc_", "sysfs_", "kernfs_",
		"debugfs_", "tracefs_", "fuse_", "ovl_", "squashfs_", "isofs_", "tmpfs_", "ramfs_", "d_", "__d_", "dput", "dget", "iput", "igrab", "inode_", "__inode", "file_", "filp_",
		"fput", "__fput", "fget", "__fget", "fd_", "fsnotify", "__fsnotify", "generic_file_", "generic_perform_write", "path_", "kern_path", "user_path", "namei", "link_path_walk",
		"lookup_", "__lookup", "walk_component", "mnt_", "mount", "do_mount", "seq_", "simple_", "iterate_dir", "getname", "putname", "block_", "blkdev_", "bio_", "submit_bio", "blk_", "__blk_", "bdev_",
		"ksys_read", "ksys_write", "ksys_pread", "ksys_pwrite", "ksys_lseek", "do_iter_", "rw_verify_area", "new_sync_", "splice_", "do_splice", "iomap_", "mpage_", "writeback_", "wb_", "__mark_inode_dirty", "sync_", "do_fsync", "locks_", "fcntl_", "do_fcntl", "epoll_", "ep_", "do_epoll", "do_select", "core_sys_select", "do_sys_poll", "eventpoll"}},
	{GroupMM, []string{"mm_", "__mm_", "page_", "__page_", "alloc_pages", "__alloc_pages", "free_pages", "__free_pages", "free_unref", "get_page_from_freelist", "kmalloc", "__kmalloc",
		"kmem_cache", "kfree", "kvfree", "kvmalloc", "krealloc", "kzalloc", "vmalloc", "__vmalloc", "vfree", "vm_", "vma_", "__vma", "mmap_", "do_mmap", "__do_munmap", "do_munmap", "do_vmi_munmap", "unmap_",
		"handle_mm_fault", "__handle_mm_fault", "do_anonymous_page", "do_fault", "do_wp_page", "wp_page_copy", "do_user_addr_fault", "exc_page_fault", "filemap_", "__filemap",
		"folio_", "__folio", "folios_", "slab_", "__slab", "___slab", "shmem_", "swap", "__swap", "zone_", "lru_", "__lru", "memcg_", "mem_cgroup", "__mem_cgroup", "pte_", "pmd_", "pud_", "p4d_", "pgd_",
		"tlb_", "flush_tlb", "follow_page", "get_user_pages", "__get_user_pages", "pin_user_pages", "copy_page", "clear_page", "migrate_", "compact", "khugepaged", "hugetlb", "huge_",
		"memblock", "pcpu_", "anon_vma", "rmap_", "try_to_unmap", "shrink_", "reclaim", "kswapd", "oom_", "madvise", "do_madvise", "mprotect", "mlock", "mremap", "readahead", "page_cache_", "mapping_", "truncate_", "invalidate_mapping", "balance_dirty", "set_page_dirty", "mark_page_accessed", "workingset_", "kasan_", "kfence_", "ksm_", "userfaultfd", "vmstat", "__mod_", "mod_zone", "mod_node", "__count_vm"}},
	{GroupDrivers, []string{"pci_", "pcie_", "__pci_", "usb_", "ata_", "scsi_", "sd_", "virtio", "vring_", "vp_", "acpi_", "tty_", "n_tty_", "uart_", "serial", "i2c_", "spi_", "input_", "drm_", "nvme_",
		"e1000", "hid_", "device_", "driver_", "bus_", "platform_", "regmap_", "gpio", "clk_", "cpufreq_", "thermal_", "hwmon", "pm_", "rtc_", "hpet_", "i8042", "serio_", "vt_", "con_", "fb_", "vga", "vcs", "dm_", "md_", "loop_", "nbd_", "mmc_", "sdhci", "ahci", "firmware_", "devm_", "dev_pm", "kobject_", "chr", "misc_", "mem_open", "random", "get_random", "urandom", "crng", "extract_entropy", "add_device_randomness", "iommu_", "intel_iommu", "amd_iommu", "msi_", "pci", "power_supply", "watchdog_", "edac_", "dma_", "swiotlb"}},
}

// Grouper assigns symbols to groups: a module by its source directory
// (modules.dep) where known, else by its name; a core kernel function by
// whether it is a syscall entry (instrument.IsSyscall64), then by its name.
type Grouper struct {
	// moduleDirs maps a module's name to its group, from modules.dep.
	moduleDirs map[string]string
}

// NewGrouper reads modules.dep (nil: no module is placed by its path).
func NewGrouper(modulesDep io.Reader) *Grouper {
	g := &Grouper{moduleDirs: map[string]string{}}
	if modulesDep == nil {
		return g
	}
	sc := bufio.NewScanner(modulesDep)
	for sc.Scan() {
		file, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		dir, _, _ := strings.Cut(strings.TrimPrefix(file, "kernel/"), "/")
		name := strings.ReplaceAll(moduleName(path.Base(file)), "-", "_")
		if grp, ok := sourceDirs[dir]; ok {
			g.moduleDirs[name] = grp
		}
	}
	return g
}

// moduleName is a module file's name without its extensions
// (ext4.ko.xz: ext4).
func moduleName(file string) string {
	name, _, _ := strings.Cut(file, ".ko")
	return name
}

// Group returns sym's group.
func (g *Grouper) Group(sym callgraph.Symbol) string {
	if sym.Module != "" {
		if grp, ok := g.moduleDirs[strings.ReplaceAll(sym.Module, "-", "_")]; ok {
			return grp
		}
		if grp := byName(sym.Module + "_"); grp != GroupOther { // ext4: as ext4_*
			return grp
		}
		return GroupDrivers
	}
	if instrument.IsSyscall64(sym.Name) {
		return GroupSyscalls
	}
	return byName(sym.Name)
}

// byName applies namePrefixes to a function's or a module's name, and
// then to the name without its leading underscores (__vfs_getxattr is
// vfs_getxattr's helper).
func byName(name string) string {
	for _, n := range []string{name, strings.TrimLeft(name, "_")} {
		for _, np := range namePrefixes {
			for _, p := range np.prefixes {
				if strings.HasPrefix(n, p) {
					return np.group
				}
			}
		}
	}
	return GroupOther
}
