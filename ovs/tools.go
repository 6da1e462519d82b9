package ovs

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/confluo-go/confluo/ovs/internal/mirrorspec"
)

// cookieMark is the top 16 bits of every OpenFlow cookie the controller uses.
const cookieMark = uint64(0xcf10) << 48

// flowCookie is the OpenFlow cookie of the mirror key's selection rules.
func flowCookie(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return cookieMark | h.Sum64()&(1<<48-1)
}

// runTool runs an OVS utility with OVS_RUNDIR set and a deadline, returning
// its standard output.
func (c *Controller) runTool(ctx context.Context, path string, args ...string) (string, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	secs := max(1, int(c.opts.CallTimeout/time.Second))
	args = append([]string{"--timeout=" + strconv.Itoa(secs)}, args...)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+c.opts.OVSRunDir)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if ctx.Err() != nil {
			msg = "timed out: " + msg
		}
		return "", fmt.Errorf("%w: %s %s: %v: %s", ErrVSwitchd, filepath.Base(path), strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// purge makes ovs-vswitchd revalidate every datapath flow, so a changed
// mirror applies to traffic whose flows are already cached. Failure is
// logged and counted, not returned: the change is committed and ovs-vswitchd
// revalidates on its own within its max-idle time.
func (c *Controller) purge(ctx context.Context) {
	if !c.opts.Purge {
		return
	}
	c.metrics.purges.Inc()
	if _, err := c.runTool(ctx, c.opts.AppctlPath, "-t", "ovs-vswitchd", "revalidator/purge"); err != nil {
		c.metrics.purgeFailures.Inc()
		c.log.Warn("revalidator/purge failed; existing flows see the change after revalidation", "err", err)
		return
	}
	c.log.Debug("purged datapath flows")
}

// renderFlows returns the ovs-ofctl add-flow lines for spec's flow selection.
func renderFlows(spec MirrorSpec, ofport int) ([]string, error) {
	cookie := flowCookie(spec.Key())
	output := fmt.Sprintf("output:%d", ofport)
	if spec.Snaplen > 0 {
		output = fmt.Sprintf("output(port=%d,max_len=%d)", ofport, spec.Snaplen)
	}
	var flows []string
	for _, m := range spec.Flows {
		match, err := mirrorspec.ParseFlowMatch(m)
		if err != nil {
			return nil, err
		}
		flows = append(flows, fmt.Sprintf("cookie=%#x,table=0,priority=%d,%s,actions=NORMAL,%s",
			cookie, mirrorspec.FlowPriority, match, output))
	}
	return flows, nil
}

// ensureFlowsLocked installs, repairs or removes the OpenFlow selection rules
// of spec. hadInDB says the mirror row recorded flows before this change
// (another process may have installed them). It reports whether it changed
// any rule. Caller holds applyMu.
func (c *Controller) ensureFlowsLocked(ctx context.Context, st *mirrorspec.State, spec MirrorSpec, hadInDB bool) (bool, error) {
	key := spec.Key()
	c.mu.Lock()
	applied, had := c.mu.flows[key]
	c.mu.Unlock()
	if len(spec.Flows) == 0 {
		if !had && !hadInDB {
			return false, nil
		}
		return true, c.removeFlowsLocked(ctx, spec.Bridge, key, true)
	}
	status := sprayStatus(st, spec.OutputPort())
	if status.OFPort <= 0 {
		return false, fmt.Errorf("%w: %q has no OpenFlow port for the flow selection (ofport %d, error %q)",
			ErrSprayPortNotReady, spec.OutputPort(), status.OFPort, status.Error)
	}
	flows, err := renderFlows(spec, status.OFPort)
	if err != nil {
		return false, err
	}
	want := strings.Join(flows, "\n")
	cookie := flowCookie(key)
	installed, err := c.checkFlowsLocked(ctx, spec.Bridge, cookie)
	if err != nil {
		return false, err
	}
	if had && applied == want && installed == len(flows) {
		return false, nil
	}
	if _, err := c.runTool(ctx, c.opts.OfctlPath, "del-flows", spec.Bridge, fmt.Sprintf("cookie=%#x/-1", cookie)); err != nil {
		return false, err
	}
	for _, f := range flows {
		if _, err := c.runTool(ctx, c.opts.OfctlPath, "add-flow", spec.Bridge, f); err != nil {
			return true, err
		}
	}
	c.mu.Lock()
	c.mu.flows[key] = want
	c.mu.Unlock()
	c.metrics.flowInstalls.Inc()
	c.log.Info("openflow selection installed", "bridge", spec.Bridge, "mirror", spec.Name,
		"why", map[bool]string{true: "rules missing or changed", false: "new"}[had], "flows", flows)
	return true, nil
}

// removeFlowsLocked deletes the selection rules of a mirror key if this
// controller installed them or force is set.
func (c *Controller) removeFlowsLocked(ctx context.Context, bridge, key string, force bool) error {
	c.mu.Lock()
	_, had := c.mu.flows[key]
	delete(c.mu.flows, key)
	c.mu.Unlock()
	if !had && !force {
		return nil
	}
	_, err := c.runTool(ctx, c.opts.OfctlPath, "del-flows", bridge, fmt.Sprintf("cookie=%#x/-1", flowCookie(key)))
	if err == nil {
		c.log.Info("openflow selection removed", "bridge", bridge, "mirror", key)
	}
	return err
}

// lineCookie extracts the cookie of a dump-flows line.
func lineCookie(line string) (uint64, bool) {
	i := strings.Index(line, "cookie=")
	if i < 0 {
		return 0, false
	}
	v := line[i+len("cookie="):]
	if j := strings.IndexAny(v, ", "); j >= 0 {
		v = v[:j]
	}
	ck, err := strconv.ParseUint(v, 0, 64)
	return ck, err == nil
}

// isDefaultFlow reports whether a dump-flows line is the stock
// "priority=0 actions=NORMAL" flow of a standalone bridge.
func isDefaultFlow(line string) bool {
	ck, _ := lineCookie(line)
	return ck == 0 && strings.HasSuffix(line, "actions=NORMAL") &&
		(strings.Contains(line, "priority=0 ") || strings.Contains(line, "priority=0,") || !strings.Contains(line, "priority="))
}

// checkFlowsLocked dumps table 0 of bridge and returns how many rules carry
// cookie. It fails with ErrFlowSelection if the bridge has rules other than
// Confluo-Go's and the default "actions=NORMAL" one.
func (c *Controller) checkFlowsLocked(ctx context.Context, bridge string, cookie uint64) (int, error) {
	dump, err := c.runTool(ctx, c.opts.OfctlPath, "--no-stats", "--no-names", "dump-flows", bridge)
	if err != nil {
		return 0, err
	}
	installed, foreign := 0, []string{}
	for _, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "NXST_FLOW") || strings.HasPrefix(line, "OFPST_FLOW") {
			continue
		}
		ck, ok := lineCookie(line)
		switch {
		case ok && ck == cookie:
			installed++
		case ok && ck&(0xffff<<48) == cookieMark:
			// another Confluo-Go mirror's rule
		case isDefaultFlow(line):
		default:
			foreign = append(foreign, line)
		}
	}
	if len(foreign) > 0 {
		return 0, fmt.Errorf("%w: bridge %q has OpenFlow rules besides the default NORMAL one (first: %q); "+
			"flow selection would bypass them", ErrFlowSelection, bridge, foreign[0])
	}
	return installed, nil
}
