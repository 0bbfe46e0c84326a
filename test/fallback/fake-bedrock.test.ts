/** The fake itself: it refuses what real Bedrock would refuse before any model runs. */
import t from 'tap';
import { FakeBedrock, parseSigV4 } from '../helpers/fake-bedrock.js';

const GOOD_AUTH =
  'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20300101/us-east-1/bedrock/aws4_request, ' +
  `SignedHeaders=content-type;host;x-amz-date, Signature=${'a'.repeat(64)}`;

t.test('parseSigV4', async (t) => {
  t.match(parseSigV4(GOOD_AUTH, '20300101T000000Z'), {
    accessKeyId: 'AKIDEXAMPLE',
    region: 'us-east-1',
    service: 'bedrock',
    signedHeaders: ['content-type', 'host', 'x-amz-date'],
  });
  t.equal(parseSigV4(undefined, '20300101T000000Z'), 'Missing Authentication Token');
  t.match(parseSigV4('Bearer abc', '20300101T000000Z'), /not a well-formed/);
  t.match(parseSigV4(GOOD_AUTH.replace('a'.repeat(64), 'a'.repeat(63)), '20300101T000000Z'), /not a well-formed/);
  t.match(parseSigV4(GOOD_AUTH.replace('/bedrock/', '/s3/'), '20300101T000000Z'), /service 'bedrock'/);
  t.match(parseSigV4(GOOD_AUTH, undefined), /X-Amz-Date/);
  t.match(parseSigV4(GOOD_AUTH, '20300102T000000Z'), /does not match/);
  t.match(parseSigV4(GOOD_AUTH.replace('host;', ''), '20300101T000000Z'), /must include host/);
});

t.test('unsigned or badly signed requests get a 403 AccessDeniedException', async (t) => {
  const fake = await FakeBedrock.start();
  t.teardown(() => fake.close());
  const url = `${fake.endpoint}/model/${encodeURIComponent('meta.llama3-8b-instruct-v1:0')}/invoke`;
  const unsigned = await fetch(url, { method: 'POST', body: '{"prompt":"x"}' });
  t.equal(unsigned.status, 403);
  t.match(unsigned.headers.get('x-amzn-errortype'), /^AccessDeniedException:/);
  t.same(await unsigned.json(), { message: 'Missing Authentication Token' });

  const badlySigned = await fetch(url, {
    method: 'POST',
    body: '{"prompt":"x"}',
    headers: { authorization: 'AWS4-HMAC-SHA256 Credential=x', 'x-amz-date': '20300101T000000Z' },
  });
  t.equal(badlySigned.status, 403);

  fake.expectedRegion = 'eu-west-1';
  const wrongRegion = await fetch(url, {
    method: 'POST',
    body: '{"prompt":"x"}',
    headers: { authorization: GOOD_AUTH, 'x-amz-date': '20300101T000000Z' },
  });
  t.equal(wrongRegion.status, 403);
  t.match(await wrongRegion.json(), { message: /valid region/ });

  fake.expectedRegion = null;
  const signed = await fetch(url, {
    method: 'POST',
    body: '{"prompt":"x"}',
    headers: { authorization: GOOD_AUTH, 'x-amz-date': '20300101T000000Z', 'content-type': 'application/json' },
  });
  t.equal(signed.status, 200);
  t.match(await signed.json(), { generation: 'Hello from the fake Bedrock.', stop_reason: 'stop' });
  t.equal(fake.requests.length, 4);
  t.equal(fake.requests[3].modelId, 'meta.llama3-8b-instruct-v1:0');
});

t.test('unknown routes and bodies', async (t) => {
  const fake = await FakeBedrock.start();
  t.teardown(() => fake.close());
  const headers = { authorization: GOOD_AUTH, 'x-amz-date': '20300101T000000Z' };
  const unknown = await fetch(`${fake.endpoint}/foundation-models`, { method: 'POST', headers });
  t.equal(unknown.status, 404);
  const badBody = await fetch(`${fake.endpoint}/model/m/invoke`, { method: 'POST', headers, body: '{"text":"x"}' });
  t.equal(badBody.status, 400);
  t.match(badBody.headers.get('x-amzn-errortype'), /^ValidationException/);
});
