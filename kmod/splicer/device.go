package splicer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/autoprof/autoprof/internal/kernel"
)

// Device is an open session of the module: everything spliced through it
// is withdrawn when it is closed, or when its process dies. It is safe
// for concurrent use.
type Device struct {
	mu   sync.Mutex
	f    *os.File
	info Info
	mem  []byte // the statistics, mapped read-only
}

// ErrRemoved says the module was removed (rmmod) under an open session: it
// withdrew the session's splices first, and the session can do nothing
// more.
var ErrRemoved = errors.New(ModuleName + " was removed under the session (rmmod): it withdrew every splice")

// ioctl issues a request the module implements: ENOTTY means that procfs
// answered instead, the module having gone.
func ioctl(f *os.File, request uint32, arg unsafe.Pointer, keep ...any) error {
	err := kernel.Ioctl(f, request, arg, keep...)
	if errors.Is(err, kernel.ENOTTY) {
		return fmt.Errorf("%w: %w", ErrRemoved, err)
	}
	return err
}

// Open opens a session. The module allows one at a time (EBUSY).
func Open() (*Device, error) {
	f, err := kernel.OpenDevice(ControlPath)
	if errors.Is(err, kernel.ENOENT) {
		return nil, fmt.Errorf("%w: %w", ErrNotLoaded, err)
	}
	if err != nil {
		return nil, err
	}
	d := &Device{f: f}
	if err := ioctl(f, iocInfo, unsafe.Pointer(&d.info)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: reading its limits: %w", ControlPath, err)
	}
	if err := d.info.check(); err != nil {
		f.Close()
		return nil, err
	}
	if d.mem, err = kernel.MapReadOnly(f, int(d.info.MapSize)); err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// check compares the module's interface with this package's.
func (in Info) check() error {
	switch {
	case in.ABI != abi:
		return fmt.Errorf("%s speaks interface %d, autoprof %d: rebuild the module", ModuleName, in.ABI, abi)
	case in.InfoSize != uint32(unsafe.Sizeof(Info{})),
		in.SpliceSize != uint32(unsafe.Sizeof(Splice{})),
		in.StatsSize != uint32(unsafe.Sizeof(Stats{})):
		return fmt.Errorf("%s was built with structures of other sizes (info %d, splice %d, stats %d): rebuild the module",
			ModuleName, in.InfoSize, in.SpliceSize, in.StatsSize)
	case in.MaxDepth != MaxDepth:
		return fmt.Errorf("%s keeps %d frames per thread, autoprof expects %d", ModuleName, in.MaxDepth, MaxDepth)
	}
	return nil
}

// Info returns the module's limits and layout.
func (d *Device) Info() Info { return d.info }

func (d *Device) file() (*os.File, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil, os.ErrClosed
	}
	return d.f, nil
}

// DefaultMaxOverhead is the share of all CPUs the module lets its handlers
// take, over a second, before its kill switch withdraws everything, where
// the controller asks for no other (SAFETY D.20).
const DefaultMaxOverhead = 0.05

// Hello starts the session for the kernel the controller analysed: the
// module checks id, resets its statistics and arms the dead-man switch
// (deadman 0: the module's maximum, 30 s) and the overhead kill switch
// (maxOverhead, a share of all CPUs in (0, 1]; 0: DefaultMaxOverhead).
func (d *Device) Hello(id Identity, deadman time.Duration, maxOverhead float64) error {
	f, err := d.file()
	if err != nil {
		return err
	}
	var h hello
	if len(id.Release) >= len(h.Release) || len(id.BuildID) > len(h.BuildID) {
		return fmt.Errorf("kernel identity %s does not fit the module's", id)
	}
	copy(h.Release[:], id.Release)
	copy(h.BuildID[:], id.BuildID)
	h.BuildIDLen = uint8(len(id.BuildID))
	h.DeadmanMs = uint32(deadman / time.Millisecond)
	if maxOverhead < 0 || maxOverhead > 1 {
		return fmt.Errorf("overhead limit %g: want a share of the CPUs in (0, 1]", maxOverhead)
	}
	h.MaxOverheadPPM = uint32(maxOverhead * 1e6)
	if err := ioctl(f, iocHello, unsafe.Pointer(&h)); err != nil {
		if errors.Is(err, kernel.ESTALE) {
			return fmt.Errorf("%s refuses: the running kernel is not %s: %w", ModuleName, id, err)
		}
		return fmt.Errorf("starting a %s session: %w", ModuleName, err)
	}
	return nil
}

// Insert splices a batch in; each Splice's Err (a negative errno), its
// instruments' IDs and Tramp say what became of it. It returns how many
// sites went live.
func (d *Device) Insert(sp []Splice) (int, error) {
	if len(sp) == 0 {
		return 0, nil
	}
	f, err := d.file()
	if err != nil {
		return 0, err
	}
	b := batch{Ptr: uint64(uintptr(unsafe.Pointer(&sp[0]))), N: uint32(len(sp))}
	if err := ioctl(f, iocInsert, unsafe.Pointer(&b), sp); err != nil {
		return 0, fmt.Errorf("splicing %d sites in: %w", len(sp), err)
	}
	return int(b.Done), nil
}

// Withdraw splices the sites at addrs out, with all their instruments,
// and returns how many were live.
func (d *Device) Withdraw(addrs []uint64) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	f, err := d.file()
	if err != nil {
		return 0, err
	}
	b := batch{Ptr: uint64(uintptr(unsafe.Pointer(&addrs[0]))), N: uint32(len(addrs))}
	if err := ioctl(f, iocWithdraw, unsafe.Pointer(&b), addrs); err != nil {
		return 0, fmt.Errorf("withdrawing %d sites: %w", len(addrs), err)
	}
	return int(b.Done), nil
}

// Beat tells the dead-man switch the controller is alive. An error
// wrapping kernel.ETIMEDOUT says the dead-man switch has fired, one
// wrapping kernel.EOVERFLOW the overhead kill switch: everything was
// withdrawn.
func (d *Device) Beat() error {
	f, err := d.file()
	if err != nil {
		return err
	}
	return ioctl(f, iocBeat, nil)
}

// Instruments returns the state and fast-path counts of the instruments
// ids, and the misses summed over CPUs. An id the module does not know
// (of another session) reads as Free.
func (d *Device) Instruments(ids []uint32) ([]InstRead, [numMisses]uint64, error) {
	if len(ids) > MaxRead {
		return nil, [numMisses]uint64{}, fmt.Errorf("reading %d instruments: the module reads %d at a time", len(ids), MaxRead)
	}
	out := make([]InstRead, len(ids)+1)
	for i, id := range ids {
		out[i].ID = id
	}
	f, err := d.file()
	if err != nil {
		return nil, [numMisses]uint64{}, err
	}
	r := readArgs{Ptr: uint64(uintptr(unsafe.Pointer(&out[0]))), N: uint32(len(ids))}
	if err := ioctl(f, iocReadAll, unsafe.Pointer(&r), out); err != nil {
		return nil, r.Misses, fmt.Errorf("reading instruments: %w", err)
	}
	return out[:len(ids)], r.Misses, nil
}

// Status returns what the instruments have cost so far, as the module's
// overhead kill switch measures it.
func (d *Device) Status() (Status, error) {
	var st Status
	f, err := d.file()
	if err != nil {
		return st, err
	}
	if err := ioctl(f, iocStatus, unsafe.Pointer(&st)); err != nil {
		return st, fmt.Errorf("reading the module's status: %w", err)
	}
	return st, nil
}

// Audit has the module check its bookkeeping against itself: instrument
// ids against the sites that name them, free counts against free slots.
// Any Broken rule is a defect of the module. It needs no session.
func (d *Device) Audit() (Audit, error) {
	var a Audit
	f, err := d.file()
	if err != nil {
		return a, err
	}
	if err := ioctl(f, iocAudit, unsafe.Pointer(&a)); err != nil {
		return a, fmt.Errorf("auditing the module's bookkeeping: %w", err)
	}
	return a, nil
}

// Contexts returns the context table: entry i is context i+1.
func (d *Device) Contexts() ([]Ctx, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return nil, os.ErrClosed
	}
	h := (*header)(unsafe.Pointer(&d.mem[0]))
	if h.Magic != magic {
		return nil, fmt.Errorf("%s: the statistics area has no header", ModuleName)
	}
	n := min(h.NCtx, d.info.MaxCtxs-1)
	all := unsafe.Slice((*Ctx)(unsafe.Pointer(&d.mem[d.info.CtxOffset])), d.info.MaxCtxs)
	return append([]Ctx(nil), all[1:n+1]...), nil
}

// Stats returns context ctx's statistics summed over CPUs.
func (d *Device) Stats(ctx uint32) (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum Stats
	if d.f == nil {
		return sum, os.ErrClosed
	}
	if ctx == 0 || ctx >= d.info.MaxCtxs {
		return sum, fmt.Errorf("context %d: out of range", ctx)
	}
	for cpu := uint64(0); cpu < uint64(d.info.NCPUs); cpu++ {
		off := d.info.CPUOffset + cpu*d.info.Stride + uint64(ctx)*uint64(unsafe.Sizeof(Stats{}))
		s := (*Stats)(unsafe.Pointer(&d.mem[off]))
		sum.Calls += s.Calls
		sum.Incl += s.Incl
		sum.Excl += s.Excl
		sum.OffIncl += s.OffIncl
		sum.OffExcl += s.OffExcl
		for i := range sum.Hist {
			sum.Hist[i] += s.Hist[i]
		}
	}
	return sum, nil
}

// Close ends the session: the module withdraws everything it spliced. A
// second call returns os.ErrClosed.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return os.ErrClosed
	}
	err := kernel.Unmap(d.mem)
	d.mem = nil
	err = errors.Join(err, d.f.Close())
	d.f = nil
	return err
}

// SetName stores a function name in a Splice.
func (s *Splice) SetName(name string) error {
	if len(name) >= len(s.Name) {
		return fmt.Errorf("function name %q is too long for the module", name)
	}
	s.Name = [nameLen]byte{}
	copy(s.Name[:], name)
	return nil
}

// FoundName returns the name the module found at a site it refused with
// ENOENT.
func (s *Splice) FoundName() string {
	return string(bytes.TrimRight(s.Found[:], "\x00"))
}

// Why returns the module's reason for refusing a splice, "" where it gave
// none.
func (s *Splice) Why() string {
	if s.Err == 0 || s.Err == -int32(syscall.ENOENT) {
		return ""
	}
	return s.FoundName()
}
