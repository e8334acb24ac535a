package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
)

// TLSConfig is what mod_ssl's directives say of a service: TLS to its
// clients (SSLEngine, SSLCertificateFile and SSLCertificateKeyFile pairs,
// SSLProtocol, SSLCipherSuite) and to its https:// real servers
// (SSLProxyEngine, SSLProxyVerify, SSLProxyCACertificateFile).
type TLSConfig struct {
	// Engine is SSLEngine on: clients speak TLS.
	Engine bool
	// Certs are the certificate and key files, in order; a client's SNI
	// picks the first whose names match (the first when none does).
	Certs []CertFiles
	// MinVersion and MaxVersion are SSLProtocol's range (tls.VersionTLS12
	// and tls.VersionTLS13 by default).
	MinVersion, MaxVersion uint16
	// CipherSuites are SSLCipherSuite's TLS 1.2 suites; nil is Go's
	// defaults.
	CipherSuites []uint16
	// ProxyEngine is SSLProxyEngine on: https:// and wss:// real servers
	// may be used.
	ProxyEngine bool
	// ProxyVerify is SSLProxyVerify require: a real server's certificate
	// must chain to ProxyCAFile (or the system's roots without one).
	ProxyVerify bool
	ProxyCAFile string
	// H2 is "Protocols h2 http/1.1": HTTP/2 offered through ALPN (TLS
	// only; Apache's default is http/1.1 alone).
	H2 bool
}

// CertFiles is one SSLCertificateFile and the SSLCertificateKeyFile that
// follows it (or the key inside the certificate file).
type CertFiles struct {
	Pos       string // FILE:LINE of SSLCertificateFile
	Cert, Key string
}

// tlsDirective parses the mod_ssl directives; handled is false for any
// other directive.
func (p *parser) tlsDirective(orig, name string, args []string) (handled bool, err error) {
	t := &p.cfg.TLS
	onOff := func() (bool, error) {
		if len(args) != 1 || !strings.EqualFold(args[0], "on") && !strings.EqualFold(args[0], "off") {
			return false, p.errf("%s takes on or off", orig)
		}
		return strings.EqualFold(args[0], "on"), nil
	}
	file := func() (string, error) {
		if len(args) != 1 || args[0] == "" {
			return "", p.errf("%s takes one file name", orig)
		}
		return args[0], nil
	}
	switch name {
	case "sslengine":
		t.Engine, err = onOff()
	case "sslproxyengine":
		t.ProxyEngine, err = onOff()
	case "sslcertificatefile":
		var f string
		if f, err = file(); err == nil {
			t.Certs = append(t.Certs, CertFiles{Pos: p.pos(), Cert: f})
		}
	case "sslcertificatekeyfile":
		var f string
		if f, err = file(); err == nil {
			if len(t.Certs) == 0 || t.Certs[len(t.Certs)-1].Key != "" {
				return true, p.errf("SSLCertificateKeyFile without an SSLCertificateFile before it: write SSLCertificateFile first, then its key")
			}
			t.Certs[len(t.Certs)-1].Key = f
		}
	case "sslproxycacertificatefile":
		t.ProxyCAFile, err = file()
	case "sslproxyverify":
		if len(args) != 1 {
			return true, p.errf("SSLProxyVerify takes none or require")
		}
		switch strings.ToLower(args[0]) {
		case "none":
			t.ProxyVerify = false
		case "require":
			t.ProxyVerify = true
		default:
			return true, p.errf("SSLProxyVerify %s is not supported: write none or require (optional and optional_no_ca verify nothing here)", args[0])
		}
	case "protocols":
		t.H2 = false
		for _, a := range args {
			switch strings.ToLower(a) {
			case "h2":
				t.H2 = true
			case "http/1.1":
			case "h2c":
				return true, p.errf("Protocols h2c (HTTP/2 without TLS) is not supported: write Protocols h2 http/1.1 with SSLEngine on")
			default:
				return true, p.errf("Protocols %q: write h2 and http/1.1", a)
			}
		}
		if !slices.ContainsFunc(args, func(a string) bool { return strings.EqualFold(a, "http/1.1") }) {
			return true, p.errf("Protocols without http/1.1: HTTP/1.1 clients are always served; write Protocols h2 http/1.1")
		}
	case "sslprotocol":
		t.MinVersion, t.MaxVersion, err = p.sslProtocol(args)
	case "sslciphersuite":
		t.CipherSuites, err = p.sslCipherSuite(args)
	default:
		return false, nil
	}
	return true, err
}

// sslProtocolNames are SSLProtocol's protocols, oldest first, as Go's
// versions (0: SSLv3, which Go has not).
func sslProtocolNames() ([]string, []uint16) {
	return []string{"sslv3", "tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"},
		[]uint16{0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}
}

// sslProtocol is SSLProtocol [+|-]protocol ...: "all" is TLSv1.2 and
// TLSv1.3 (Apache 2.4's all without what OpenSSL 3 no longer offers); the
// set must be a range, as Go takes a minimum and a maximum.
func (p *parser) sslProtocol(args []string) (uint16, uint16, error) {
	names, versions := sslProtocolNames()
	on := make([]bool, len(names))
	if len(args) == 0 {
		return 0, 0, p.errf("SSLProtocol takes protocols: write SSLProtocol all -TLSv1.2, or TLSv1.2 TLSv1.3")
	}
	for _, a := range args {
		sign := byte('+')
		if a != "" && (a[0] == '+' || a[0] == '-') {
			sign, a = a[0], a[1:]
		}
		var set []int
		if strings.EqualFold(a, "all") {
			set = []int{3, 4}
		} else if k := slices.Index(names, strings.ToLower(a)); k >= 0 {
			set = []int{k}
		} else {
			return 0, 0, p.errf("SSLProtocol %q: write all, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3, each with + or - if you like", a)
		}
		for _, k := range set {
			on[k] = sign != '-'
		}
	}
	if on[0] {
		return 0, 0, p.errf("SSLProtocol: SSLv3 is not supported (it is broken, and Go has none): remove it")
	}
	lo, hi := slices.Index(on, true), -1
	for k := range on {
		if on[k] {
			hi = k
		}
	}
	if lo < 0 {
		return 0, 0, p.errf("SSLProtocol leaves no protocol: write SSLProtocol all")
	}
	if slices.Contains(on[lo:hi+1], false) {
		return 0, 0, p.errf("SSLProtocol leaves a gap between %s and %s: Go takes a range of versions, so name a range", args[0], args[len(args)-1])
	}
	return versions[lo], versions[hi], nil
}

// openSSLSuites maps the OpenSSL names of the TLS 1.2 suites Go has to
// their IANA names (tls.CipherSuiteName).
func openSSLSuites() map[string]string {
	return map[string]string{
		"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
		"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
		"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
		"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
		"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
		"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
		"AES128-GCM-SHA256":             "TLS_RSA_WITH_AES_128_GCM_SHA256",
		"AES256-GCM-SHA384":             "TLS_RSA_WITH_AES_256_GCM_SHA384",
		"AES128-SHA":                    "TLS_RSA_WITH_AES_128_CBC_SHA",
		"AES256-SHA":                    "TLS_RSA_WITH_AES_256_CBC_SHA",
	}
}

// sslCipherSuite is SSLCipherSuite's TLS 1.2 list in OpenSSL's form: the
// suites Go has, by OpenSSL or IANA name, in order; HIGH and exclusions
// (!aNULL, !MD5, ...) of what Go never offers keep Go's defaults (nil).
// Anything else is refused with the reason: Go cannot offer it.
func (p *parser) sslCipherSuite(args []string) ([]uint16, error) {
	if len(args) == 2 && strings.HasPrefix(strings.ToUpper(args[0]), "TLSV1.3") {
		return nil, p.errf("SSLCipherSuite TLSv1.3 is not supported: Go offers its TLS 1.3 suites itself; remove the line")
	}
	if len(args) != 1 {
		return nil, p.errf("SSLCipherSuite takes one list: write SSLCipherSuite ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
	}
	byIANA := map[string]uint16{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		byIANA[s.Name] = s.ID
	}
	names := openSSLSuites()
	var out []uint16
	for _, item := range strings.FieldsFunc(args[0], func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		up := strings.ToUpper(item)
		switch {
		case up == "HIGH" || up == "DEFAULT" || up == "@STRENGTH" || up == "@SECLEVEL=1" || up == "@SECLEVEL=2":
			continue // Go's own choice is of these
		case item[0] == '!' || item[0] == '-':
			continue // an exclusion: Go offers nothing weaker than HIGH
		}
		id, ok := byIANA[names[up]]
		if !ok {
			id, ok = byIANA[up]
		}
		if !ok {
			return nil, p.errf("SSLCipherSuite %q: Go has no such TLS 1.2 suite (it has %s): name suites it has, or write HIGH:!aNULL", item, goSuiteNames(names))
		}
		out = append(out, id)
	}
	return out, nil
}

func goSuiteNames(m map[string]string) string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// loadTLS builds the client side's tls.Config (nil without SSLEngine on)
// and the real servers' (nil without SSLProxyEngine on) from the files the
// directives name.
func loadTLS(t *TLSConfig, readFile func(string) ([]byte, error)) (front, back *tls.Config, err error) {
	if t.Engine {
		if len(t.Certs) == 0 {
			return nil, nil, fmt.Errorf("SSLEngine on without SSLCertificateFile: %w", ErrDirective)
		}
		front = &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13, CipherSuites: t.CipherSuites,
			NextProtos: []string{"http/1.1"}}
		if t.H2 {
			front.NextProtos = []string{"h2", "http/1.1"}
		}
		if t.MinVersion != 0 {
			front.MinVersion, front.MaxVersion = t.MinVersion, t.MaxVersion
		}
		for _, c := range t.Certs {
			key := c.Key
			if key == "" {
				key = c.Cert
			}
			certPEM, err := readFile(c.Cert)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: SSLCertificateFile: %w", c.Pos, err)
			}
			keyPEM, err := readFile(key)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: SSLCertificateKeyFile: %w", c.Pos, err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: SSLCertificateFile %s: %w", c.Pos, c.Cert, err)
			}
			front.Certificates = append(front.Certificates, pair)
		}
	}
	if t.ProxyEngine {
		back = &tls.Config{NextProtos: []string{"http/1.1"}}
		if !t.ProxyVerify {
			// SSLProxyVerify none, Apache's default: the real server's
			// certificate is not checked.
			back.InsecureSkipVerify = true
		} else if t.ProxyCAFile != "" {
			pem, err := readFile(t.ProxyCAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("SSLProxyCACertificateFile: %w", err)
			}
			back.RootCAs = x509.NewCertPool()
			if !back.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("SSLProxyCACertificateFile %s: no PEM certificate in it", t.ProxyCAFile)
			}
		}
	}
	return front, back, nil
}
