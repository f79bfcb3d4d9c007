package controller

import (
	"context"
	"net/netip"
	"time"

	"github.com/aloft-dev/aloft/internal/gateway"
	"github.com/aloft-dev/aloft/internal/store"
)

// accessPolicy is the gateway policy of a deployment: its spec's access
// section plus its live (not revoked) endpoint tokens.
func (c *Controller) accessPolicy(ctx context.Context, d store.Deployment) (gateway.Access, error) {
	a := gateway.Access{Public: d.Spec.Access.Public == nil || *d.Spec.Access.Public}
	for _, s := range d.Spec.Access.AllowCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				continue // validated on apply; never widen access on a bad entry
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		a.Allow = append(a.Allow, p.Masked())
	}
	if len(d.Spec.Access.AllowCIDRs) > 0 && len(a.Allow) == 0 {
		a.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")} // nothing valid: admit no one
	}
	if a.Public {
		return a, nil
	}
	toks, err := c.st.ListEndpointTokens(ctx, d.Name)
	if err != nil {
		return a, err
	}
	a.Tokens = map[string]time.Time{}
	for _, t := range toks {
		if t.RevokedAt != nil || t.Workspace != d.Workspace {
			continue
		}
		var exp time.Time
		if t.ExpiresAt != nil {
			exp = *t.ExpiresAt
		}
		a.Tokens[t.Hash] = exp
	}
	return a, nil
}
