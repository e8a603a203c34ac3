import { describe, expect, it } from 'vitest';

import { readCertificate } from '../../src/common/cert-reader.ts';
import { DerError, Tag, decodeOid, decodeTime, oid, readTlv, time, uintBytes } from '../../src/common/der.ts';
import { KeyUsage, keyUsage } from '../../src/server/ca/x509-extensions.ts';
import { makeTestCa } from '../support/ca-fixtures.ts';

describe('DER encoding', () => {
  it.each([
    { date: '2049-12-31T23:59:59Z', tag: Tag.UTC_TIME, text: '491231235959Z' },
    { date: '2050-01-01T00:00:00Z', tag: Tag.GENERALIZED_TIME, text: '20500101000000Z' },
    { date: '1999-06-01T12:00:00.900Z', tag: Tag.UTC_TIME, text: '990601120000Z' },
  ])('encodes $date as $text and reads it back to the second', ({ date, tag, text }) => {
    const der = time(Date.parse(date));
    expect(der[0]).toBe(tag);
    expect(der.subarray(2).toString('latin1')).toBe(text);
    expect(decodeTime(der, readTlv(der, 0))).toBe(Math.floor(Date.parse(date) / 1000) * 1000);
  });

  it.each(['1.2.840.10045.4.3.2', '2.5.29.17', '1.3.6.1.5.5.7.3.2', '2.999.1'])('round-trips OID %s', (dotted) => {
    const der = oid(dotted);
    expect(decodeOid(der.subarray(2))).toBe(dotted);
  });

  it.each([
    { bytes: [0x80], encoded: '02020080' },
    { bytes: [0x00, 0x01], encoded: '020101' },
    { bytes: [0x7f], encoded: '02017f' },
  ])('encodes the positive integer $bytes minimally', ({ bytes, encoded }) => {
    expect(uintBytes(Buffer.from(bytes)).toString('hex')).toBe(encoded);
  });

  it.each([
    { bits: [KeyUsage.digitalSignature, KeyUsage.keyEncipherment, KeyUsage.keyAgreement], value: '030203a8' },
    { bits: [KeyUsage.keyCertSign, KeyUsage.cRLSign], value: '03020106' },
    { bits: [KeyUsage.digitalSignature], value: '03020780' },
  ])('encodes key usage $bits as a minimal named-bit string', ({ bits, value }) => {
    // Extension = SEQUENCE { OID 2.5.29.15, BOOLEAN TRUE, OCTET STRING { BIT STRING } }
    const ext = keyUsage(bits);
    expect(ext.subarray(ext.length - value.length / 2).toString('hex')).toBe(value);
    expect(ext.includes(Buffer.from('0101ff', 'hex'))).toBe(true);
  });

  it('rejects indefinite lengths and elements running past their container', () => {
    expect(() => readTlv(Buffer.from('3080', 'hex'), 0)).toThrow(new DerError('indefinite length is not DER'));
    expect(() => readTlv(Buffer.from('300500', 'hex'), 0)).toThrow(new DerError('element extends past its container'));
  });
});

describe('readCertificate', () => {
  it('reads a certificate made by another library', async () => {
    const notBefore = new Date(Date.UTC(2026, 0, 1));
    const notAfter = new Date(Date.UTC(2027, 0, 1));
    const ca = await makeTestCa({ notBefore, notAfter, pathLength: 2, name: 'C=US, O=Test, CN=reader' });
    const info = readCertificate(ca.der);
    expect(info.version).toBe(3);
    expect(info.notBefore).toBe(notBefore.getTime());
    expect(info.notAfter).toBe(notAfter.getTime());
    expect(info.isCa).toBe(true);
    expect(info.pathLen).toBe(2);
    expect([...(info.keyUsage ?? [])].sort()).toEqual([KeyUsage.keyCertSign, KeyUsage.cRLSign]);
    expect(info.subjectDer.equals(info.issuerDer)).toBe(true);
    expect(info.spkiDer.equals(ca.pair.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    expect(info.signatureAlgorithm).toBe('1.2.840.10045.4.3.2');
  });
});
