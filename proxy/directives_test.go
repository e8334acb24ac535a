package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDirectives(t *testing.T) {
	text := `# comment
ProxyPass /app/private !
ProxyPass "/app" http://198.18.7.1:8080/app retry=5 timeout=3 connectiontimeout=2
ProxyPassMatch ^/img/(.*)$ http://198.18.7.2/i/$1
ProxyPass ~ ^/x(.*) http://198.18.7.2/y$1
ProxyPass /lb balancer://Pool/ \
    maxattempts=1
ProxyPassReverse /lb balancer://pool/
ProxyPreserveHost On
ProxyTimeout 7
<Proxy balancer://pool>
  BalancerMember http://198.18.7.3:80 loadfactor=2.5 status=+H
  BalancerMember http://198.18.7.4 retry=0
  ProxySet lbmethod=bybusyness
</Proxy>
`
	cfg, err := ParseDirectives(text, "site.conf", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 5 || !cfg.Routes[0].Exclude() || cfg.Routes[1].Worker.Retry.Seconds() != 5 ||
		cfg.Routes[2].Regex == nil || cfg.Routes[3].Regex == nil || cfg.Routes[4].Balancer != "pool" {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
	if cfg.Routes[4].Pos != "site.conf:6" {
		t.Errorf("pos %q", cfg.Routes[4].Pos)
	}
	b := cfg.Balancers[0]
	if b.Name != "pool" || b.LBMethod != "bybusyness" || b.MaxAttempts != 1 || len(b.Members) != 2 ||
		b.Members[0].Worker.LoadFactor != 250 || !b.Members[0].Worker.HotStandby || b.Members[1].Worker.Retry != -1 {
		t.Fatalf("balancer: %+v", b)
	}
	if !cfg.PreserveHost || cfg.Timeout.Seconds() != 7 || len(cfg.Reverse) != 1 {
		t.Fatalf("config: %+v", cfg)
	}
	if _, err := New(cfg, Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestParseDirectivesErrors: every bad directive is rejected with its line
// number and a hint.
func TestParseDirectivesErrors(t *testing.T) {
	for _, c := range []struct {
		text, want string
	}{
		{"ProxyPass /a", "x.conf:1: ProxyPass needs a path and a URL"},
		{"\n\nProxyPass a http://h/", "x.conf:3: ProxyPass path \"a\" must start with /"},
		{"ProxyPass /a ftp://h/", "x.conf:1: URL \"ftp://h/\": scheme must be"},
		{"ProxyPass /a http://h:99999/", "bad host or port"},
		{"ProxyPass /a http://h/ retry=x", "retry=x: write a number of seconds"},
		{"ProxyPass /a http://h/ bogus", "write key=value"},
		{"ProxyPass /a http://h/ foo=1", "unknown or unsupported worker parameter"},
		{"ProxyPass /a http://h/ loadfactor=2", "applies to BalancerMember only"},
		{"ProxyPassMatch ^(/a http://h/", "regular expression"},
		{"ProxyPass /a balancer://none", "x.conf:1: ProxyPass: balancer://none has no members"},
		{"<Proxy balancer://p>\nBalancerMember http://h loadfactor=101\n</Proxy>", "x.conf:2: loadfactor=101: LoadFactor must be a number between 1..100"},
		{"<Proxy balancer://p>\nBalancerMember http://h\n", "x.conf:1: <Proxy balancer://p> is not closed"},
		{"</Proxy>", "without <Proxy"},
		{"<Proxy balancer://p>\nProxySet lbmethod=random\n</Proxy>", "x.conf:2: lbmethod=random: use byrequests, bybusyness or bytraffic"},
		{"<Proxy balancer://p>\nProxySet stickysession=JSESSIONID\n</Proxy>", "stickysession is not supported"},
		{"ProxyRequests On", "not supported"},
		{"ProxyPreserveHost maybe", "takes On or Off"},
		{"Listen 80", "x.conf:1: unknown or unsupported directive \"Listen\""},
		{"ProxyPass \"/a http://h/", "unterminated quote"},
		{"ProxyPassReverse /a", "needs a path and a URL"},
		{"<Proxy http://h>\n</Proxy>", "is not a balancer URL"},
		{"BalancerMember http://h", "BalancerMember outside <Proxy>"},
		{"ProxyTimeout -1", "positive number of seconds"},
		{"ProxyPass /a http://h/ status=+Z", "status=+Z"},
		// A file that is no Apache configuration (l7.file: /etc/shadow)
		// is refused without repeating it.
		{"root:$y$j9T$secret:19000:0:99999:7:::", "x.conf:1: not an Apache directive (the line is not shown)"},
	} {
		_, err := ParseDirectives(c.text, "x.conf", 1)
		if err == nil || !errors.Is(err, ErrDirective) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error repeats the file: %v", c.text, err)
		}
	}
}
