//go:build !vm

package splicer

import (
	"testing"
	"unsafe"
)

// TestLayout compiles a probe of module/uapi.h with the host's C compiler
// and compares the sizes and offsets of its structures with this
// package's mirrors.
func TestLayout(t *testing.T) {
	type field struct {
		expr string
		got  uintptr
	}
	fields := []field{
		{"sizeof(struct ap_info)", unsafe.Sizeof(Info{})},
		{"offsetof(struct ap_info, pool_start)", unsafe.Offsetof(Info{}.PoolStart)},
		{"offsetof(struct ap_info, cpu_stride)", unsafe.Offsetof(Info{}.Stride)},
		{"sizeof(struct ap_hello)", unsafe.Sizeof(hello{})},
		{"offsetof(struct ap_hello, build_id_len)", unsafe.Offsetof(hello{}.BuildIDLen)},
		{"offsetof(struct ap_hello, deadman_ms)", unsafe.Offsetof(hello{}.DeadmanMs)},
		{"sizeof(struct ap_splice)", unsafe.Sizeof(Splice{})},
		{"offsetof(struct ap_splice, role)", unsafe.Offsetof(Splice{}.Role)},
		{"offsetof(struct ap_splice, ninst)", unsafe.Offsetof(Splice{}.NInst)},
		{"offsetof(struct ap_splice, insts)", unsafe.Offsetof(Splice{}.Insts)},
		{"sizeof(struct ap_inst_req)", unsafe.Sizeof(InstReq{})},
		{"offsetof(struct ap_splice, orig)", unsafe.Offsetof(Splice{}.Orig)},
		{"offsetof(struct ap_splice, err)", unsafe.Offsetof(Splice{}.Err)},
		{"offsetof(struct ap_splice, out)", unsafe.Offsetof(Splice{}.Out)},
		{"offsetof(struct ap_splice, tramp)", unsafe.Offsetof(Splice{}.Tramp)},
		{"offsetof(struct ap_splice, tramp_len)", unsafe.Offsetof(Splice{}.TrampLen)},
		{"offsetof(struct ap_splice, found)", unsafe.Offsetof(Splice{}.Found)},
		{"offsetof(struct ap_hello, max_overhead_ppm)", unsafe.Offsetof(hello{}.MaxOverheadPPM)},
		{"offsetof(struct ap_info, stub_exit)", unsafe.Offsetof(Info{}.StubExit)},
		{"offsetof(struct ap_info, stub_count_flags)", unsafe.Offsetof(Info{}.StubCountFlags)},
		{"offsetof(struct ap_info, gs_current)", unsafe.Offsetof(Info{}.GSCurrent)},
		{"sizeof(struct ap_batch)", unsafe.Sizeof(batch{})},
		{"sizeof(struct ap_inst_read)", unsafe.Sizeof(InstRead{})},
		{"offsetof(struct ap_inst_read, fast)", unsafe.Offsetof(InstRead{}.Fast)},
		{"sizeof(struct ap_status)", unsafe.Sizeof(Status{})},
		{"offsetof(struct ap_status, dead)", unsafe.Offsetof(Status{}.Dead)},
		{"AP_IOC_STATUS", uintptr(iocStatus)},
		{"sizeof(struct ap_audit)", unsafe.Sizeof(Audit{})},
		{"offsetof(struct ap_audit, sites)", unsafe.Offsetof(Audit{}.Sites)},
		{"offsetof(struct ap_audit, broken)", unsafe.Offsetof(Audit{}.Broken)},
		{"AP_A_LEAK", uintptr(AuditLeak)},
		{"AP_A_SLOT0", uintptr(AuditSlot0)},
		{"AP_A_INT3", uintptr(AuditInt3)},
		{"AP_IOC_AUDIT", uintptr(iocAudit)},
		{"AP_MAX_READ", MaxRead},
		{"AP_RETURN", uintptr(Return)},
		{"AP_OVERLOAD", uintptr(Overload)},
		{"sizeof(struct ap_read)", unsafe.Sizeof(readArgs{})},
		{"offsetof(struct ap_read, misses)", unsafe.Offsetof(readArgs{}.Misses)},
		{"sizeof(struct ap_stats)", unsafe.Sizeof(Stats{})},
		{"sizeof(struct ap_ctx)", unsafe.Sizeof(Ctx{})},
		{"sizeof(struct ap_header)", unsafe.Sizeof(header{})},
		{"AP_IOC_INFO", uintptr(iocInfo)},
		{"AP_IOC_HELLO", uintptr(iocHello)},
		{"AP_IOC_INSERT", uintptr(iocInsert)},
		{"AP_IOC_WITHDRAW", uintptr(iocWithdraw)},
		{"AP_IOC_BEAT", uintptr(iocBeat)},
		{"AP_IOC_READ", uintptr(iocReadAll)},
		{"AP_MAGIC", magic},
		{"AP_ABI", abi},
		{"AP_SITE_INSTS", SiteInsts},
		{"AP_MAX_PIDS", MaxPIDs},
		{"AP_MAX_WINDOW", MaxWindow},
	}
	exprs := make([]string, len(fields))
	for i, f := range fields {
		exprs[i] = f.expr
	}
	vals := cProbe(t, "uapi.h", "#include <stddef.h>\n#include \"uapi.h\"", exprs)
	for i, f := range fields {
		if want := vals[i]; uint64(f.got) != want {
			t.Errorf("%s: Go has %d, C has %d", f.expr, f.got, want)
		}
	}
}
