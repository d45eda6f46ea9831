import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ScopeDestroyedError } from '../../src/seal/errors.js';
import type { WrappedDataKey } from '../../src/seal/keyring-store.js';
import type { Db } from '../../src/store/connection.js';
import { DataKeyRepository, destroyScopeKeys, isScopeDestroyed } from '../../src/store/repositories/data-keys.js';
import { createTestDatabase, describeEachBackend, type TestDatabase } from '../helpers/database.js';

// The KeyringStore contract (src/seal/keyring-store.ts) as the store implements it.

const wrapped = (kekId = 'kek-a'): WrappedDataKey => ({ wrappedKey: randomBytes(40), kekKind: 'local', kekId });

await describeEachBackend('data keys: the keyring store', (backend) => {
  let testDb: TestDatabase;
  let db: Db;
  let store: DataKeyRepository;

  before(async () => {
    testDb = await createTestDatabase(backend);
    db = testDb.database.db;
    store = new DataKeyRepository(db);
  });
  after(async () => {
    await testDb.cleanup();
  });

  test('versions count up per scope, wrap is called with the version allocated, and list orders by scope and version', async () => {
    const asked: number[] = [];
    const wrap = async (version: number) => {
      asked.push(version);
      return wrapped();
    };
    assert.equal(await store.addVersion('b-scope', { onlyIfNone: false }, wrap), 1);
    assert.equal(await store.addVersion('a-scope', { onlyIfNone: false }, wrap), 1);
    assert.equal(await store.addVersion('b-scope', { onlyIfNone: false }, wrap), 2);
    assert.deepEqual(asked, [1, 1, 2]);
    const listed = (await store.list()).filter((key) => key.scope.endsWith('-scope'));
    assert.deepEqual(
      listed.map((key) => [key.scope, key.version, key.state]),
      [
        ['a-scope', 1, 'active'],
        ['b-scope', 1, 'active'],
        ['b-scope', 2, 'active'],
      ],
    );
  });

  test('onlyIfNone adds nothing to a scope that has a version, without wrapping', async () => {
    let wrapCalls = 0;
    const answer = await store.addVersion('b-scope', { onlyIfNone: true }, async () => {
      wrapCalls += 1;
      return wrapped();
    });
    assert.equal(answer, undefined);
    assert.equal(wrapCalls, 0);
  });

  test('concurrent additions get distinct versions', async () => {
    const versions = await Promise.all(Array.from({ length: 4 }, () => store.addVersion('busy', { onlyIfNone: false }, async () => wrapped())));
    assert.deepEqual([...versions].sort(), [1, 2, 3, 4]);
  });

  test('a failing wrap writes nothing', async () => {
    await assert.rejects(store.addVersion('failing', { onlyIfNone: false }, async () => Promise.reject(new Error('HSM gone'))), /HSM gone/);
    assert.equal((await store.list()).filter((key) => key.scope === 'failing').length, 0);
  });

  test('a shredded scope is refused without wrapping, and never reuses a version', async () => {
    await store.addVersion('shredded', { onlyIfNone: false }, async () => wrapped());
    assert.deepEqual(await db.transaction((tx) => destroyScopeKeys(tx, 'shredded')), [1]);
    assert.equal(await isScopeDestroyed(db, 'shredded'), true);
    let wrappedCalls = 0;
    await assert.rejects(
      store.addVersion('shredded', { onlyIfNone: true }, async () => {
        wrappedCalls += 1;
        return wrapped();
      }),
      ScopeDestroyedError,
    );
    assert.equal(wrappedCalls, 0);
    const [tombstone] = (await store.list()).filter((key) => key.scope === 'shredded');
    assert.deepEqual([tombstone!.state, tombstone!.wrappedKey], ['destroyed', null]);
  });

  test('replaceWrapping moves a key only while it is still under the KEK named', async () => {
    await store.addVersion('rewrapped', { onlyIfNone: false }, async () => wrapped('kek-a'));
    const next = wrapped('kek-b');
    await store.replaceWrapping({ scope: 'rewrapped', version: 1 }, 'kek-a', next);
    await store.replaceWrapping({ scope: 'rewrapped', version: 1 }, 'kek-a', wrapped('kek-c'));
    const [key] = (await store.list()).filter((entry) => entry.scope === 'rewrapped');
    assert.equal(key!.kekId, 'kek-b');
    assert.deepEqual(Buffer.from(key!.wrappedKey!), next.wrappedKey);
  });
});
