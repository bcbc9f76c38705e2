package runtime

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/abi"
)

// Validate calls sluice_validate on a pooled instance, with no capability bound. A config
// the plugin refuses comes back as a *PluginError whose Err.Field names the key at fault.
func (p *Plugin) Validate(ctx context.Context, req abi.ValidateRequest) error {
	in, err := p.pool.getFor(ctx, true)
	if err != nil {
		return err
	}
	defer p.pool.put(in)
	in.beginCall(nil, modeControl)
	return in.callJSON(ctx, abi.ExportValidate, in.fn.validate, req, nil)
}

// Test calls sluice_test (the destination check) with the run's capabilities bound. Uploads
// the plugin leaves open are aborted. A plugin without sluice_test gets a one-step report
// saying so.
func (p *Plugin) Test(ctx context.Context, req abi.OpenRequest, b Bindings) (abi.TestReport, error) {
	var rep abi.TestReport
	if !p.hasTest {
		rep.Steps = []abi.TestStep{{Name: "sluice_test", OK: true, Message: "the plugin does not implement a destination test; nothing was checked"}}
		return rep, nil
	}
	in, err := p.pool.get(ctx)
	if err != nil {
		return rep, err
	}
	defer p.pool.put(in)
	in.startRun(b, req.Columns)
	err = in.callJSON(ctx, abi.ExportTest, in.fn.test, req, &rep)
	in.endRun(ctx)
	return rep, err
}

// Classify decides what to do with a failure that happened outside a session (for example
// an Open that failed), on a pooled instance. See Session.Classify.
func (p *Plugin) Classify(ctx context.Context, err error, attempt int) abi.Classification {
	if c, decided := hostDecides(err, attempt); decided {
		return c
	}
	in, gerr := p.pool.get(ctx)
	if gerr != nil {
		return HostClassify(err, attempt)
	}
	defer p.pool.put(in)
	in.beginCall(nil, modeClassify)
	return in.classify(ctx, err, attempt)
}

// Session is one run on one instance: Open, WriteBatch*, Finish, then Close (always, also
// after a failure, after Classify). It is not safe for concurrent use.
type Session struct {
	p       *Plugin
	in      *instance
	attempt int
	closed  bool
}

// Open borrows an instance (waiting for a free one, at most Limits.PoolSize in use) and
// calls sluice_open with the run's capabilities bound. On failure the run is already closed
// on the instance; classify the error with Plugin.Classify.
func (p *Plugin) Open(ctx context.Context, req abi.OpenRequest, b Bindings) (*Session, error) {
	in, err := p.pool.get(ctx)
	if err != nil {
		return nil, err
	}
	in.startRun(b, req.Columns)
	s := &Session{p: p, in: in, attempt: req.Attempt}
	if err := in.callJSON(ctx, abi.ExportOpen, in.fn.open, req, nil); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	return s, nil
}

func (in *instance) startRun(b Bindings, cols []abi.Column) {
	in.run = runState{b: b, cols: cols}
	in.resp, in.hasResp = nil, false
	in.mode = modeRun
}

// endRun aborts what the plugin left open and unbinds the capabilities.
func (in *instance) endRun(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.p.limits.CallTimeout)
	defer cancel()
	var errs []error
	for h, e := range in.run.encoders {
		_ = e.e.Close()
		delete(in.run.encoders, h)
	}
	for h, u := range in.run.uploads {
		if err := u.u.Abort(ctx); err != nil {
			errs = append(errs, fmt.Errorf("abort upload %q: %w", u.key, err))
		}
		in.emitLog(-4, fmt.Sprintf("host: aborted upload %q left open by the plugin", u.key))
		delete(in.run.uploads, h)
	}
	in.stdout.flush()
	in.stderr.flush()
	in.run = runState{}
	in.resp, in.hasResp = nil, false
	return errors.Join(errs...)
}

func (s *Session) usable(export string) error {
	if s.closed {
		return &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("plugin %q: %s on a closed session", s.p.Manifest.Name, export)}
	}
	return nil
}

// WriteBatch hands one SLB1 batch to sluice_write_batch. The batch stays in host memory;
// the guest refers to it by a handle valid only during this call.
func (s *Session) WriteBatch(ctx context.Context, batch []byte, records int) error {
	if err := s.usable(abi.ExportWriteBatch); err != nil {
		return err
	}
	if len(batch) < 12 || [4]byte(batch[:4]) != abi.Magic || int(binary.LittleEndian.Uint32(batch[4:8])) != records {
		return &HostError{Status: abi.StatusInternal, Msg: fmt.Sprintf("plugin %q: WriteBatch given a batch that is not SLB1 with %d records", s.p.Manifest.Name, records)}
	}
	in := s.in
	in.beginCall(nil, modeRun)
	in.batchID++
	if in.batchID == 0 {
		in.batchID = 1
	}
	in.batch, in.batchLive = batch, true
	doc, err := in.callDoc(ctx, abi.ExportWriteBatch, in.fn.writeBatch, uint64(in.batchID), uint64(uint32(records)))
	in.batch, in.batchLive, in.batchOffs = nil, false, nil
	if err != nil {
		return err
	}
	return in.decode(abi.ExportWriteBatch, doc, nil)
}

// Finish calls sluice_finish and returns the run's result.
func (s *Session) Finish(ctx context.Context) (Result, error) {
	var r Result
	if err := s.usable(abi.ExportFinish); err != nil {
		return r, err
	}
	in := s.in
	in.beginCall(nil, modeRun)
	doc, err := in.callDoc(ctx, abi.ExportFinish, in.fn.finish)
	if err != nil {
		return r, err
	}
	if err = in.decode(abi.ExportFinish, doc, &r.Result); err != nil {
		return r, err
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(doc, &keys) == nil {
		_, r.RecordsReported = keys["records"]
	}
	return r, nil
}

// Result is what sluice_finish returned. RecordsReported tells a plugin's own count of
// the records it wrote, 0 included, from a result without a "records" key: then the
// host records the number it streamed (SPEC section 7).
type Result struct {
	abi.Result
	RecordsReported bool
}

// Classify decides what to do with a failure of this run (SPEC section 10). Cancellation,
// deadlines and traps are decided by the host; other failures by the plugin's
// sluice_classify on this instance, falling back to HostClassify if that call fails or
// answers nonsense.
func (s *Session) Classify(ctx context.Context, err error) abi.Classification {
	if c, decided := hostDecides(err, s.attempt); decided {
		return c
	}
	if s.closed {
		return s.p.Classify(ctx, err, s.attempt)
	}
	if s.in.broken != "" { // use a fresh instance; the session continues on it
		old := s.in
		_ = old.endRun(ctx)
		s.p.pool.put(old)
		in, gerr := s.p.pool.get(context.WithoutCancel(ctx))
		if gerr != nil {
			s.closed = true
			return HostClassify(err, s.attempt)
		}
		s.in = in
	}
	s.in.beginCall(nil, modeClassify)
	c := s.in.classify(ctx, err, s.attempt)
	s.in.mode = modeRun
	return c
}

func (in *instance) classify(ctx context.Context, err error, attempt int) abi.Classification {
	var c abi.Classification
	req := abi.ClassifyRequest{Error: toABIError(err), Attempt: attempt}
	if cerr := in.callJSON(ctx, abi.ExportClassify, in.fn.classify, req, &c); cerr != nil {
		h := HostClassify(err, attempt)
		h.Reason += fmt.Sprintf(" (plugin classify failed: %v)", cerr)
		return h
	}
	switch c.Outcome {
	case abi.OutcomeOK, abi.OutcomeRetry, abi.OutcomeFail:
		c.RetryAfterMS = 0
		return c
	case abi.OutcomeRetryAfter:
		if c.RetryAfterMS > 0 {
			return c
		}
		c.Outcome = abi.OutcomeRetry
		return c
	}
	h := HostClassify(err, attempt)
	h.Reason += fmt.Sprintf(" (plugin classify answered unknown outcome %q)", truncate(c.Outcome, 40))
	return h
}

// hostDecides returns the host's classification when the host knows better than the plugin:
// cancellation (never retried), deadlines and traps (SPEC section 10).
func hostDecides(err error, attempt int) (abi.Classification, bool) {
	if err == nil {
		return abi.Classification{Outcome: abi.OutcomeOK}, true
	}
	var de *DeadlineError
	var te *TrapError
	var ce *CancelledError
	if errors.As(err, &de) || errors.As(err, &te) || errors.As(err, &ce) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return HostClassify(err, attempt), true
	}
	return abi.Classification{}, false
}

// HostClassify is the host's own rule: cancelled → fail; deadline → retry; trap → retry on
// the first attempt, then fail; by status: retryable_io and internal → retry; fatal_io,
// denied, not_found, bad_argument, limit_exceeded, unimplemented → fail; anything else → retry
// (bounded by the export's retry budget).
func HostClassify(err error, attempt int) abi.Classification {
	if err == nil {
		return abi.Classification{Outcome: abi.OutcomeOK}
	}
	var de *DeadlineError
	var te *TrapError
	switch {
	case errors.As(err, &de):
		return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "plugin call exceeded its deadline"}
	case errors.As(err, &te):
		if attempt <= 1 {
			return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "plugin crashed (" + te.Kind + "); retrying once"}
		}
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "plugin crashed (" + te.Kind + ") again"}
	}
	st := StatusOf(err)
	var pe *PluginError
	if errors.As(err, &pe) {
		st = pe.ABIStatus()
	}
	switch st {
	case abi.StatusCancelled:
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "run cancelled"}
	case abi.StatusFatalIO, abi.StatusDenied, abi.StatusNotFound, abi.StatusBadArgument,
		abi.StatusLimitExceeded, abi.StatusUnimplemented:
		return abi.Classification{Outcome: abi.OutcomeFail, Reason: "not retryable: " + st.String()}
	}
	return abi.Classification{Outcome: abi.OutcomeRetry, Reason: "retryable: " + st.String()}
}

// Close calls sluice_close (even after a failure or cancellation, under its own deadline),
// aborts uploads left open, and returns the instance to the pool, or discards it if it
// trapped, timed out or grew past the recycle budget. Close is idempotent.
func (s *Session) Close(ctx context.Context) error {
	if s.closed {
		return nil
	}
	s.closed = true
	in := s.in
	var err error
	if in.broken == "" {
		in.beginCall(nil, modeRun)
		cctx := context.WithoutCancel(ctx)
		var doc []byte
		doc, err = in.callDoc(cctx, abi.ExportClose, in.fn.close)
		if err == nil {
			err = in.decode(abi.ExportClose, doc, nil)
		}
	}
	err = errors.Join(err, in.endRun(ctx))
	s.p.pool.put(in)
	return err
}
