// CoreDNS with only the plugins a cluster's DNS needs: the e2e cluster's pods
// resolve Service names as they would on k3s or kubeadm, whose DNS is CoreDNS.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order in which the plugins handle a query (CoreDNS's plugin.cfg).
	dnsserver.Directives = []string{"bind", "errors", "health", "ready", "cache", "kubernetes"}
}

func main() { coremain.Run() }
