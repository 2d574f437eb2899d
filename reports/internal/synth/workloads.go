package synth

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Read describes a hunt of a process reading a cached ext4 file size
// bytes at a time, on Debian's 6.1 kernel or, with kernel "6.12", on 6.12,
// where the tree differs as real builds do: the user-copy routine has
// another name (rep_movs_alternative), filemap_get_read_batch carries a
// GCC clone suffix (.isra.0), and ksys_read is inlined into
// __x64_sys_read. Costs follow the shape of a cached read: a fixed cost per
// syscall and a copy cost per 4 KiB page.
func Read(size int, kernel string, seed uint64) Spec {
	pages := math.Max(1, float64(size)/4096)
	batches := math.Max(1, pages/8)
	copyFn, batchFn := "copy_user_enhanced_fast_string", "filemap_get_read_batch"
	release := "6.1.0-28-amd64"
	if strings.HasPrefix(kernel, "6.12") {
		copyFn, batchFn, release = "rep_movs_alternative", "filemap_get_read_batch.isra.0", "6.12.12-amd64"
	}
	nodes := []Node{
		{"__x64_sys_read", -1, 1, 90, 0, 0},                 // 0
		{"ksys_read", 0, 1, 35, 0, 0},                       // 1
		{"vfs_read", 1, 1, 60, 0, 0},                        // 2
		{"rw_verify_area", 2, 1, 25, 0, 0},                  // 3
		{"security_file_permission", 3, 1, 30, 0, 0},        // 4
		{"apparmor_file_permission", 4, 1, 45, 0, 0},        // 5
		{"ext4:ext4_file_read_iter", 2, 1, 40, 0, 0},        // 6
		{"generic_file_read_iter", 6, 1, 30, 0, 0},          // 7
		{"filemap_read", 7, 1, 250 + 15*pages, 0, 0},        // 8
		{"filemap_get_pages", 8, batches, 120, 0, 0},        // 9
		{batchFn, 9, batches, 180 + 20*pages/batches, 0, 0}, // 10
		{"copy_page_to_iter", 8, pages, 40, 0, 0},           // 11
		{copyFn, 11, pages, 400, 0, 0},                      // 12
		{"folio_mark_accessed", 8, pages, 25, 0, 0},         // 13
		{"touch_atime", 8, 1, 40, 0, 0},                     // 14
		{"atime_needs_update", 14, 1, 20, 0, 0},             // 15
		{"filemap_read+0x1a6", 8, pages, 0, 0, 0},           // 16
		{"__fsnotify_parent", 2, 1, 30, 0, 0},               // 17
	}
	if strings.HasPrefix(kernel, "6.12") {
		nodes = inline(nodes, 1)
	}
	return Spec{
		Name:        fmt.Sprintf("read-%dk", size/1024),
		Kernel:      release,
		Seed:        seed,
		Rounds:      40,
		Round:       250 * time.Millisecond,
		OpsPerRound: 1.5e8 / (1500 + 560*pages),
		Noise:       0.05,
		Elsewhere:   0.3,
		Nodes:       nodes,
	}
}

// inline removes node i, as if the compiler had inlined it into its caller:
// its exclusive time moves to the caller and its children hang from the
// caller.
func inline(nodes []Node, i int) []Node {
	parent := nodes[i].Parent
	nodes[parent].ExclNs += nodes[i].ExclNs * nodes[i].CallsPerOp / nodes[parent].CallsPerOp
	var out []Node
	renum := make([]int, len(nodes))
	for j, n := range nodes {
		if j == i {
			renum[j] = renum[parent]
			continue
		}
		renum[j] = len(out)
		if n.Parent >= 0 {
			n.Parent = renum[n.Parent]
		}
		out = append(out, n)
	}
	return out
}

// Fsync describes a hunt of a process that writes a little and calls
// fsync on an ext4 file: most of its time is off-CPU, waiting for writeback
// (io_schedule, reached on two paths) and for the journal commit (jbd2 is a
// module).
func Fsync(seed uint64) Spec {
	return Spec{
		Name:        "fsync-loop",
		Kernel:      "6.1.0-28-amd64",
		Seed:        seed,
		Rounds:      40,
		Round:       250 * time.Millisecond,
		OpsPerRound: 1500,
		Noise:       0.08,
		Elsewhere:   0.1,
		Nodes: []Node{
			{"__x64_sys_fsync", -1, 1, 60, 0, 0},                // 0
			{"ext4:ext4_sync_file", 0, 1, 80, 0, 0},             // 1
			{"file_write_and_wait_range", 1, 1, 50, 0, 0},       // 2
			{"__filemap_fdatawrite_range", 2, 1, 40, 0, 0},      // 3
			{"do_writepages", 3, 1, 70, 0, 0},                   // 4
			{"ext4:ext4_writepages", 4, 1, 3000, 0, 0},          // 5
			{"__filemap_fdatawait_range", 2, 1, 60, 0, 0},       // 6
			{"folio_wait_writeback", 6, 1, 30, 0, 0},            // 7
			{"io_schedule", 7, 1, 80000, 0.98, 0},               // 8
			{"jbd2:jbd2_complete_transaction", 1, 1, 200, 0, 0}, // 9
			{"jbd2:jbd2_log_wait_commit", 9, 1, 40, 0, 0},       // 10
			{"schedule", 10, 0.9, 45000, 0.97, 0},               // 11
			{"blkdev_issue_flush", 1, 1, 100, 0, 0},             // 12
			{"submit_bio_wait", 12, 1, 40, 0, 0},                // 13
			{"io_schedule", 13, 1, 20000, 0.95, 0},              // 14
			{"ext4:ext4_writepages+0x2c4", 5, 3, 0, 0, 0},       // 15
			// measured for 10 rounds, then withdrawn: too cheap to keep
			{"file_check_and_advance_wb_err", 2, 1, 60, 0, 10}, // 16
		},
	}
}

// Sampled describes the same read hunt as Read(4096, "6.1"), to be passed
// through OnlySampled: what a host without function instruments gives.
func Sampled(seed uint64) Spec {
	s := Read(4096, "6.1", seed)
	s.Name = "read-4k-host"
	return s
}
