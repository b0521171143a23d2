import t from 'tap'
import { computeSpecHash, compareUtf8, goJsonIngressSpec, goString, ingressHash, setIngressDefaults } from '../src/compile/hash.ts'
import type { IngressSpec } from '../src/model/k8s.ts'

// The expected strings below were written by hand from the Go struct definitions in
// knative.dev/networking pkg/apis/networking/v1alpha1/ingress_types.go (field order, json tags).

t.test('setIngressDefaults', async (t) => {
  const spec: IngressSpec = {
    rules: [
      {
        hosts: ['a.example.com'],
        http: {
          paths: [
            { splits: [{ serviceNamespace: 'ns', serviceName: 'one', servicePort: 80 }] },
            { splits: [{ serviceNamespace: 'ns', serviceName: 'zero', servicePort: 80, percent: 0 }] },
            { splits: [{ serviceNamespace: 'ns', serviceName: 'kept', servicePort: 80, percent: 30 }] },
            {
              splits: [
                { serviceNamespace: 'ns', serviceName: 'a', servicePort: 80 },
                { serviceNamespace: 'ns', serviceName: 'b', servicePort: 80, percent: 100 },
              ],
            },
          ],
        },
      },
      { visibility: 'ClusterLocal', http: { paths: [] } },
    ],
  }
  const before = structuredClone(spec)
  const got = setIngressDefaults(spec)
  t.same(spec, before, 'input is not mutated')
  t.equal(got.rules?.[0]?.visibility, 'ExternalIP', 'visibility defaults to ExternalIP')
  t.equal(got.rules?.[1]?.visibility, 'ClusterLocal', 'explicit visibility kept')
  const paths = got.rules?.[0]?.http?.paths ?? []
  t.equal(paths[0]?.splits[0]?.percent, 100, 'omitted percent of a single split -> 100')
  t.equal(paths[1]?.splits[0]?.percent, 100, 'zero percent of a single split -> 100')
  t.equal(paths[2]?.splits[0]?.percent, 30, 'a non-zero single percent is left alone (validation rejects it)')
  t.equal(paths[3]?.splits[0]?.percent, undefined, 'multi-split paths are not defaulted')
  t.not(got.rules?.[0], spec.rules?.[0], 'deep copy')
})

t.test('goJsonIngressSpec: every field, in Go struct order', async (t) => {
  // Deliberately give keys in a different order from Go's, to prove the order comes from the struct.
  const spec = {
    httpOption: 'Redirected',
    rules: [
      {
        http: {
          paths: [
            {
              appendHeaders: { 'X-B': 'b', 'X-A': 'a' },
              splits: [
                {
                  appendHeaders: { 'Knative-Serving-Revision': 'r1', 'Knative-Serving-Namespace': 'ns' },
                  percent: 60,
                  servicePort: 80,
                  serviceName: 'r1',
                  serviceNamespace: 'ns',
                },
                { percent: 40, servicePort: 'http2', serviceName: 'r2', serviceNamespace: 'ns' },
              ],
              headers: { 'K-Tag': { exact: 'x' }, Accept: { exact: 'y' } },
              rewriteHost: 'svc.ns.svc.cluster.local',
              path: '/api',
            },
          ],
        },
        visibility: 'ExternalIP',
        hosts: ['a.example.com', 'b.example.com'],
      },
    ],
    tls: [{ secretNamespace: 'ns', secretName: 'cert', hosts: ['a.example.com'] }],
  } as IngressSpec
  const want =
    '{"tls":[{"hosts":["a.example.com"],"secretName":"cert","secretNamespace":"ns"}],' +
    '"rules":[{"hosts":["a.example.com","b.example.com"],"visibility":"ExternalIP","http":{"paths":[' +
    '{"path":"/api","rewriteHost":"svc.ns.svc.cluster.local","headers":{"Accept":{"exact":"y"},"K-Tag":{"exact":"x"}},' +
    '"splits":[' +
    '{"serviceNamespace":"ns","serviceName":"r1","servicePort":80,"percent":60,"appendHeaders":{"Knative-Serving-Namespace":"ns","Knative-Serving-Revision":"r1"}},' +
    '{"serviceNamespace":"ns","serviceName":"r2","servicePort":"http2","percent":40}' +
    '],"appendHeaders":{"X-A":"a","X-B":"b"}}]}}],' +
    '"httpOption":"Redirected"}'
  t.equal(goJsonIngressSpec(spec), want)
})

t.test('goJsonIngressSpec: omitempty and zero values', async (t) => {
  t.equal(goJsonIngressSpec({}), '{}', 'empty spec')
  t.equal(goJsonIngressSpec({ tls: [], rules: [], httpOption: '' }), '{}', 'empty slices and "" dropped')
  t.equal(goJsonIngressSpec({ rules: [{}] }), '{"rules":[{}]}', 'rule with nil http drops http')
  t.equal(goJsonIngressSpec({ rules: [{ hosts: [], http: { paths: [] } }] }), '{"rules":[{"http":{"paths":[]}}]}', 'empty paths stays []')
  t.equal(
    goJsonIngressSpec({ rules: [{ http: {} as { paths: [] } }] }),
    '{"rules":[{"http":{"paths":null}}]}',
    'paths is not omitempty: nil is null',
  )
  t.equal(
    goJsonIngressSpec({ rules: [{ http: { paths: [{} as never] } }] }),
    '{"rules":[{"http":{"paths":[{"splits":null}]}}]}',
    'splits is not omitempty: nil is null',
  )
  t.equal(
    goJsonIngressSpec({ rules: [{ http: { paths: [{ splits: [], headers: {}, appendHeaders: {}, path: '', rewriteHost: '' }] } }] }),
    '{"rules":[{"http":{"paths":[{"splits":[]}]}}]}',
    'empty maps and strings in a path dropped',
  )
  t.equal(
    goJsonIngressSpec({ rules: [{ http: { paths: [{ splits: [{} as never] }] } }] }),
    '{"rules":[{"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"","servicePort":0}]}]}}]}',
    'backend fields are never omitted; percent 0 is',
  )
  t.equal(
    goJsonIngressSpec({ rules: [{ http: { paths: [{ splits: [{ serviceNamespace: '', serviceName: 's', servicePort: 0, percent: 0, appendHeaders: {} }] }] } }] }),
    '{"rules":[{"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"s","servicePort":0}]}]}}]}',
    'explicit zeros',
  )
  t.equal(
    goJsonIngressSpec({ rules: [{ http: { paths: [{ splits: [{ serviceNamespace: 'n', serviceName: 's', servicePort: '80' }] }] } }] }),
    '{"rules":[{"http":{"paths":[{"splits":[{"serviceNamespace":"n","serviceName":"s","servicePort":"80"}]}]}}]}',
    'a string port stays a string even when it looks numeric',
  )
  t.equal(goJsonIngressSpec({ tls: [{}] }), '{"tls":[{}]}', 'tls entry with nothing set')
  t.equal(
    goJsonIngressSpec({ rules: [{ visibility: 'ClusterLocal', bogus: 1 } as never], unknown: true } as never),
    '{"rules":[{"visibility":"ClusterLocal"}]}',
    'unknown fields are not emitted',
  )
})

t.test('goJsonIngressSpec: map keys sort bytewise (UTF-8 order)', async (t) => {
  const spec: IngressSpec = {
    rules: [{ http: { paths: [{ splits: [], appendHeaders: { b: '1', B: '2', a: '3', 'a-': '4', '\u{1F600}': '5', '\uFF61': '6', '': '7' } }] } }],
  }
  // Bytes: "" < "B"(42) < "a"(61) < "a-" < "b"(62) < U+FF61 (EF BD A1) < U+1F600 (F0 9F 98 80).
  t.equal(
    goJsonIngressSpec(spec),
    '{"rules":[{"http":{"paths":[{"splits":[],"appendHeaders":{"":"7","B":"2","a":"3","a-":"4","b":"1","\uFF61":"6","\u{1F600}":"5"}}]}}]}',
  )
  t.ok(compareUtf8('\uFF61', '\u{1F600}') < 0, 'astral sorts after BMP, unlike UTF-16 order')
  t.ok('\uFF61' > '\u{1F600}', 'sanity: JS order disagrees')
})

t.test('goString escaping matches Go encoding/json', async (t) => {
  t.equal(goString('plain'), '"plain"')
  t.equal(goString('a"b\\c'), '"a\\"b\\\\c"', 'quote and backslash')
  t.equal(goString('\n\r\t'), '"\\n\\r\\t"', 'short escapes')
  t.equal(goString('\b\f'), '"\\b\\f"', 'Go >= 1.22 short escapes for \\b and \\f')
  t.equal(goString('\u0000\u0001\u001f\u000b'), '"\\u0000\\u0001\\u001f\\u000b"', 'other controls as lowercase \\u00XX')
  t.equal(goString('\u007f'), '"\u007f"', 'DEL is not escaped')
  t.equal(goString('<a href="x">&</a>'), '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e"', 'HTML escaping')
  t.equal(goString('x\u2028y\u2029z'), '"x\\u2028y\\u2029z"', 'line and paragraph separators')
  t.equal(goString('é✓\u{1F600}'), '"é✓\u{1F600}"', 'other non-ASCII written raw')
  t.equal(goString('a\uD800b'), '"a\uFFFDb"', 'lone high surrogate -> U+FFFD')
  t.equal(goString('a\uDC00'), '"a\uFFFD"', 'lone low surrogate -> U+FFFD')
  t.equal(goString('\uDC00\uD800'), '"\uFFFD\uFFFD"', 'reversed pair is two lone surrogates')
  t.equal(goString(undefined), '""', 'absent string is the zero value')
})

t.test('escaping applies to map keys and values', async (t) => {
  const spec: IngressSpec = { rules: [{ hosts: ['<h>'], http: { paths: [{ splits: [], headers: { 'X&Y': { exact: 'a>b' } } }] } }] }
  t.equal(goJsonIngressSpec(spec), '{"rules":[{"hosts":["\\u003ch\\u003e"],"http":{"paths":[{"headers":{"X\\u0026Y":{"exact":"a\\u003eb"}},"splits":[]}]}}]}')
})

t.test('hash vectors from knative/networking pkg/ingress/ingress_test.go (TestInsertProbe)', async (t) => {
  // Those tests hash an Ingress with empty namespace and name and no defaults applied, so they
  // exercise Go's ComputeHash directly: computeSpecHash is that function.
  const noAppend: IngressSpec = {
    rules: [{ hosts: ['example.com'], http: { paths: [{ splits: [{ serviceName: 'blah' } as never] }] } }],
  }
  t.equal(
    goJsonIngressSpec(noAppend),
    '{"rules":[{"hosts":["example.com"],"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"blah","servicePort":0}]}]}}]}',
  )
  t.equal(computeSpecHash('', '', noAppend), 'a25000a350642c8abef53078b329bd043e18758f6063c1172d53b04e14fcf5c1')

  const withAppend: IngressSpec = {
    rules: [{ hosts: ['example.com'], http: { paths: [{ splits: [{ serviceName: 'blah', appendHeaders: { Foo: 'bar' } } as never] }] } }],
  }
  t.equal(computeSpecHash('', '', withAppend), '6b652c7abed871354affd4a9cb699d33816f24541fac942149b91ad872fe63ca')
})

t.test('ingressHash defaults first and appends namespace and name', async (t) => {
  const spec: IngressSpec = {
    rules: [{ hosts: ['hello.default.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'hello-00001', servicePort: 80 }] }] } }],
  }
  // Hand-built from the struct definitions (not from a Knative test): the defaulted spec gains
  // visibility ExternalIP and percent 100; the digest is `sha256sum` (coreutils) of that JSON
  // followed by "defaulthello", so it does not depend on this module.
  const defaultedJson =
    '{"rules":[{"hosts":["hello.default.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceNamespace":"default","serviceName":"hello-00001","servicePort":80,"percent":100}]}]}}]}'
  t.equal(goJsonIngressSpec(setIngressDefaults(spec)), defaultedJson)
  t.equal(ingressHash('default', 'hello', spec), computeSpecHash('default', 'hello', setIngressDefaults(spec)))
  t.equal(ingressHash('default', 'hello', spec), '9da75237258f87ad194074479c02857247fc22ba5e8103def07ea85f29a33051')
  t.not(ingressHash('default', 'hello', spec), ingressHash('default', 'hello2', spec), 'name is part of the hash')
  t.not(ingressHash('default', 'hello', spec), computeSpecHash('default', 'hello', spec), 'defaulting changes the hash')
  t.match(ingressHash('a', 'b', {}), /^[0-9a-f]{64}$/)
})
