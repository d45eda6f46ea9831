import assert from 'node:assert/strict';

/**
 * Every message of a phone number's conversations as a running server's API answers them, as
 * `id|direction|body` sorted: what a test compares before and after moving a store (a backup
 * restored, a copy to PostgreSQL). `apiKey` needs `conversations:read` for the tenant.
 */
export async function readMessagesOf(baseUrl: string, apiKey: string, slug: string, phone: string): Promise<string[]> {
  const get = async (url: string) => {
    const response = await fetch(`${baseUrl}${url}`, { headers: { authorization: `Bearer ${apiKey}` } });
    assert.equal(response.status, 200, await response.clone().text());
    return response.json() as Promise<Record<string, unknown>>;
  };
  const { conversations } = (await get(`/api/v1/conversations?tenant=${slug}&phone=${encodeURIComponent(phone)}`)) as { conversations: Array<{ id: string }> };
  assert.ok(conversations.length > 0, `no conversation for ${phone}`);
  const lines: string[] = [];
  for (const conversation of conversations) {
    const { messages } = (await get(`/api/v1/conversations/${conversation.id}/messages?limit=200`)) as { messages: Array<{ id: string; direction: string; body: string }> };
    lines.push(...messages.map((message) => `${message.id}|${message.direction}|${message.body}`));
  }
  return lines.sort();
}
