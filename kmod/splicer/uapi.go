package splicer

import (
	"fmt"
	"strings"
	"unsafe"
)

// The structures of module/uapi.h, field for field. TestLayout checks
// their sizes against the C ones; Open checks them against what the
// loaded module reports.

// Limits of the interface (AP_* in uapi.h).
const (
	abi        = 5
	MaxDepth   = 32 // shadow stack frames per thread
	MaxWindow  = 32 // bytes of one splice window
	MaxPIDs    = 8  // thread groups of one instrument's filter
	SiteInsts  = 4  // instruments sharing one site
	nameLen    = 128
	MaxRead    = 1 << 20 // instruments one Instruments call reports
	HistSize   = 41
	statsWords = 5 + HistSize
	magic      = 0x61707370696365
)

// Kind is enum ap_kind.
type Kind uint32

// Instrument kinds.
const (
	Count     Kind = 1
	ExitCount Kind = 2
	Timer     Kind = 3
)

// Role is enum ap_role: what a window is to its function, which decides
// what may go there.
type Role uint8

// Window roles.
const (
	Block  Role = 1 // whole instructions inside a function: counters
	Entry  Role = 2 // right after ENDBR and the ftrace site: any kind
	Return Role = 3 // a return or a tail call: no instrument; timers' frames end there
)

// State is enum ap_state: where an instrument is in its life.
type State uint32

// Instrument states.
const (
	Free      State = 0
	Live      State = 1
	Withdrawn State = 2
	Deadman   State = 3 // withdrawn by the dead-man switch
	Broken    State = 4 // its site changed underneath; left alone
	Overload  State = 5 // withdrawn by the overhead kill switch
)

var stateNames = [...]string{"unknown", "live", "withdrawn", "withdrawn by the dead-man switch", "broken", "withdrawn by the overhead kill switch"}

// String names the state.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state?"
}

// Misses are enum ap_miss.
const (
	MissRecursion = iota
	MissDepth
	MissMapFull
	MissUnmatched
	numMisses
)

// Info is struct ap_info: the module's limits, where its code is and the
// layout of its statistics.
type Info struct {
	ABI                                   uint32
	InfoSize, SpliceSize, StatsSize       uint32
	NCPUs, MaxInsts, MaxLive              uint32
	MaxCounters, SiteInsts                uint32
	MaxCtxs, MaxThreads, MaxDepth         uint32
	SlotSize                              uint32
	SMAP                                  uint32
	PoolStart, PoolEnd                    uint64
	StubEnter, StubExit, StubCount        uint64
	StubExitFlags, StubCountFlags         uint64
	GSCurrent, GSRootTask, TaskTgid       uint64
	MapSize, CtxOffset, CPUOffset, Stride uint64
}

type hello struct {
	Release        [65]byte
	BuildIDLen     uint8
	BuildID        [20]byte
	_              [2]byte
	DeadmanMs      uint32
	MaxOverheadPPM uint32
	_              uint32
}

// InstReq is struct ap_inst_req: one instrument of a site.
type InstReq struct {
	Kind  Kind
	ID    uint32 // in: 0 for a new one, or one the site holds; out: its id
	NPIDs uint32
	PIDs  [MaxPIDs]int32
}

// FlagReplace marks a splice that replaces the trampoline of a live site.
const FlagReplace = 1

// OutFlags says that the module found the flags live after a window: a
// block window's counters save them, a return window's stub gives them
// back.
const OutFlags = 1

// Splice is struct ap_splice: one window to splice, its role, the
// instruments its trampoline runs (the module builds it), and what became
// of it.
type Splice struct {
	Addr  uint64
	Func  uint64
	Name  [nameLen]byte
	Len   uint8
	Role  Role
	_     uint16
	Flags uint32
	NInst uint32
	_     uint32
	Insts [SiteInsts]InstReq
	Orig  [MaxWindow]byte
	// Out:
	Err      int32
	Out      uint32
	Tramp    uint64
	TrampLen uint32
	_        uint32
	Found    [nameLen]byte
}

type batch struct {
	Ptr  uint64
	N    uint32
	Done uint32
}

// InstRead is struct ap_inst_read: an instrument's id in, the rest out.
type InstRead struct {
	ID    uint32
	State State
	Kind  Kind
	_     uint32
	Fast  uint64
}

// Status is struct ap_status: what the instruments cost, as the module's
// overhead kill switch measures it (time in its handlers; the counters'
// inline fast path is not timed), and whether a switch fired.
type Status struct {
	HandlerNs, ElapsedNs uint64
	LastPPM, LimitPPM    uint32 // of all CPUs' time, over the last window checked; the limit
	Dead                 State  // 0, Deadman or Overload
	_                    uint32
}

// Audit is struct ap_audit: the module's bookkeeping checked against
// itself (Device.Audit).
type Audit struct {
	InstsFree    uint32 // free instrument slots, as allocation counts them
	InstsUnused  uint32 // slots holding no id, by the walk
	InstsPending uint32 // withdrawn, freed once RCU-tasks passed
	FastFree     uint32 // free fast-path counter slots, as counted
	FastUnused   uint32 // by the walk
	Sites        uint32 // trampoline slots in any state but free
	SitesPending uint32 // given back, reused once RCU-tasks passed
	Broken       AuditRule
}

// AuditRule is a set of AP_A_* bits: the rules of the module's
// bookkeeping an audit found broken.
type AuditRule uint32

// The rules (AP_A_* in uapi.h).
const (
	AuditSlot0 AuditRule = 1 << iota
	AuditInstCount
	AuditPending
	AuditFastCount
	AuditFastOwner
	AuditSiteID
	AuditLeak
	AuditNamedPending
	AuditInt3
)

var auditRules = []string{
	"slot 0 holds an instrument",
	"the free instrument count is not the free slots",
	"a slot waiting for reclaim holds no instrument",
	"the free fast-path count is not the free fast slots",
	"a fast-path slot and its owner do not name each other",
	"a site names an instrument no slot holds",
	"a slot holds an instrument no site names and none withdrew",
	"a slot waiting for reclaim is named by a site",
	"an int3 redirect is not its armed site's",
}

// String names the broken rules, "none" when there are none.
func (r AuditRule) String() string {
	if r == 0 {
		return "none"
	}
	var out []string
	for i, s := range auditRules {
		if r&(1<<i) != 0 {
			out = append(out, s)
		}
	}
	if rest := r &^ (1<<len(auditRules) - 1); rest != 0 {
		out = append(out, fmt.Sprintf("rules %#x", uint32(rest)))
	}
	return strings.Join(out, "; ")
}

type readArgs struct {
	Ptr    uint64
	N      uint32
	_      uint32
	Misses [numMisses]uint64
}

// Stats is struct ap_stats: one context's statistics on one CPU.
type Stats struct {
	Calls            uint64
	Incl, Excl       uint64
	OffIncl, OffExcl uint64
	Hist             [HistSize]uint64
}

// Ctx is struct ap_ctx: a context id's parent context and instrument.
type Ctx struct {
	Parent, Inst uint32
}

type header struct {
	Magic uint64
	NCtx  uint32
	Gen   uint32
}

// ioctl request numbers (_IOR, _IOW, _IOWR of uapi.h).
func ioc(dir, nr uint32, size uintptr) uint32 {
	return dir<<30 | uint32(size)<<16 | 0xaf<<8 | nr
}

const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

var (
	iocInfo     = ioc(iocRead, 1, unsafe.Sizeof(Info{}))
	iocHello    = ioc(iocWrite, 2, unsafe.Sizeof(hello{}))
	iocInsert   = ioc(iocRead|iocWrite, 3, unsafe.Sizeof(batch{}))
	iocWithdraw = ioc(iocRead|iocWrite, 4, unsafe.Sizeof(batch{}))
	iocBeat     = ioc(iocNone, 5, 0)
	iocReadAll  = ioc(iocRead|iocWrite, 6, unsafe.Sizeof(readArgs{}))
	iocStatus   = ioc(iocRead, 7, unsafe.Sizeof(Status{}))
	iocAudit    = ioc(iocRead, 8, unsafe.Sizeof(Audit{}))
)
