package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// restConfig loads the kubeconfig of a cloud and returns the client
// configuration of its context, with errors that name the file and the
// context.
func restConfig(path, context string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	where := "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
	if path != "" {
		p, err := expandHome(path)
		if err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s: %w", p, err)
		}
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: p}
		where = "kubeconfig " + p
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, "", fmt.Errorf("%s: cannot be read: %w", where, err)
	}
	names := make([]string, 0, len(raw.Contexts))
	for n := range raw.Contexts {
		names = append(names, n)
	}
	slices.Sort(names)
	list := "it has none"
	if len(names) > 0 {
		list = "it has: " + strings.Join(names, ", ")
	}
	ctxName := context
	if ctxName == "" {
		ctxName = raw.CurrentContext
		if ctxName == "" {
			return nil, "", fmt.Errorf("%s has no current-context: set kubernetes.context (%s)", where, list)
		}
	}
	if _, ok := raw.Contexts[ctxName]; !ok {
		return nil, "", fmt.Errorf("%s: context %q not found (%s)", where, ctxName, list)
	}
	cc := clientcmd.NewNonInteractiveClientConfig(*raw, ctxName, &clientcmd.ConfigOverrides{}, rules)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("%s, context %q: %w", where, ctxName, err)
	}
	return cfg, ctxName, nil
}

func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}
