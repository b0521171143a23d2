// The host a Route gets, from Serving's templates (config-network): `domain-template`, by default
// `{{.Name}}.{{.Namespace}}.{{.Domain}}`, and `tag-template`, by default `{{.Tag}}-{{.Name}}`, whose
// result is the Name of a tag's host. Go's text/template is not reimplemented: the fields Serving
// passes (.Name, .Namespace, .Domain, .Tag, .Annotations, .Labels, with `index` for the maps) are,
// and anything else is refused when the option is read, never guessed at run time.
export const DEFAULT_DOMAIN_TEMPLATE = '{{.Name}}.{{.Namespace}}.{{.Domain}}'
export const DEFAULT_TAG_TEMPLATE = '{{.Tag}}-{{.Name}}'

export interface DomainFields {
  name: string
  namespace: string
  domain: string
  tag?: string
  annotations?: Record<string, string>
  labels?: Record<string, string>
}

type Part = string | { field: 'Name' | 'Namespace' | 'Domain' | 'Tag' } | { map: 'Annotations' | 'Labels'; key: string }

const ACTION = /\{\{\s*(.*?)\s*\}\}/g
const FIELD = /^\.(Name|Namespace|Domain|Tag)$/
const INDEX = /^index\s+\.(Annotations|Labels)\s+"([^"]*)"$/

/** Parses a template; throws an Error that says what is wrong and which actions are allowed. */
export function parseTemplate(template: string, allowTag: boolean): Part[] {
  const parts: Part[] = []
  let last = 0
  for (const m of template.matchAll(ACTION)) {
    if (m.index > last) parts.push(template.slice(last, m.index))
    const action = m[1]!
    const f = FIELD.exec(action)
    const i = INDEX.exec(action)
    if (f && (f[1] !== 'Tag' || allowTag)) parts.push({ field: f[1] as 'Name' })
    else if (i) parts.push({ map: i[1] as 'Annotations', key: i[2]! })
    else throw new Error(`{{${action}}} is not supported; use {{.Name}}, {{.Namespace}}, {{.Domain}}${allowTag ? ', {{.Tag}}' : ''} or {{index .Annotations "key"}}`)
    last = m.index + m[0].length
  }
  if (last < template.length) parts.push(template.slice(last))
  if (template.slice(last).includes('{{') || parts.some((p) => typeof p === 'string' && (p.includes('{{') || p.includes('}}')))) throw new Error('unbalanced {{ }} in the template')
  return parts
}

export function renderTemplate(parts: readonly Part[], fields: DomainFields): string {
  let out = ''
  for (const p of parts) {
    if (typeof p === 'string') out += p
    else if ('field' in p) out += p.field === 'Name' ? fields.name : p.field === 'Namespace' ? fields.namespace : p.field === 'Domain' ? fields.domain : (fields.tag ?? '')
    else out += (p.map === 'Annotations' ? fields.annotations : fields.labels)?.[p.key] ?? ''
  }
  return out
}

/** The external hosts of a route and its tags, as Serving computes them. */
export class DomainNames {
  private readonly domain: Part[]
  private readonly tag: Part[]

  constructor(domainTemplate = DEFAULT_DOMAIN_TEMPLATE, tagTemplate = DEFAULT_TAG_TEMPLATE) {
    this.domain = parseTemplate(domainTemplate, false)
    this.tag = parseTemplate(tagTemplate, true)
  }

  host(fields: Omit<DomainFields, 'tag'>): string {
    return renderTemplate(this.domain, fields).toLowerCase()
  }

  tagHost(tag: string, fields: Omit<DomainFields, 'tag'>): string {
    const name = renderTemplate(this.tag, { ...fields, tag })
    return this.host({ ...fields, name })
  }
}
