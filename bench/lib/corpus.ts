/**
 * Chat text for the search and chat-list stores: Korean, Japanese, English and Korean with
 * English words, from word lists written here, drawn with a seeded PRNG, so the same seed
 * gives the same corpus on every machine. Words are drawn by rank (Zipf), as chat words are:
 * a few very common ones, a long tail.
 *
 * The search scenario's queries are words of these lists: QUERY_COMMON ("회의", meeting) is a
 * part of three nouns (회의, 회의실, 회의록) of every Korean chat; QUERY_ELSEWHERE ("택배",
 * parcel) is a noun only the chats built with `elsewhere: true` use. No other word holds either
 * pair of syllables, and words are separated by spaces or particles, so a message holds the
 * query exactly when one of those words is in it (the seeder counts them with `includes`).
 */

/** mulberry32: a small, fast, seeded 32-bit PRNG; `next()` in [0, 1). */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)]!;
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  shuffle<T>(list: T[]): T[] {
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [list[i], list[j]] = [list[j]!, list[i]!];
    }
    return list;
  }
}

/** Words drawn by rank: weight 1 / (rank + offset)^s. */
class Zipf {
  private readonly cumulative: Float64Array;
  constructor(readonly words: readonly string[], s = 1, offset = 2) {
    this.cumulative = new Float64Array(words.length);
    let sum = 0;
    words.forEach((_, i) => {
      sum += 1 / (i + offset) ** s;
      this.cumulative[i] = sum;
    });
  }
  draw(r: Prng): string {
    const x = r.next() * this.cumulative[this.cumulative.length - 1]!;
    let lo = 0;
    let hi = this.cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cumulative[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return this.words[lo]!;
  }
}

const list = (s: string) => s.trim().split(/\s*\|\s*|\n\s*/).filter(Boolean);

export const QUERY_COMMON = '회의';
export const QUERY_ELSEWHERE = '택배';

// ---- Korean ----------------------------------------------------------------------------------

/** Nouns, most common first. 회의 / 회의실 / 회의록 hold QUERY_COMMON. */
const KO_NOUNS = list(`
  오늘 | 지금 | 내일 | 이거 | 그거 | 어제 | 시간 | 점심 | 회사 | 사진 | 주말 | 저녁 | 집 | 일정 | 다음 주
  이번 주 | 자료 | 문서 | 커피 | 연락 | 링크 | 파일 | 미팅 | 회의 | 아침 | 전화 | 친구 | 메일 | 발표 | 프로젝트
  코드 | 버그 | 배포 | 서버 | 테스트 | 리뷰 | 결과 | 계획 | 고객 | 팀장님 | 선배 | 엄마 | 아빠 | 동생 | 가족
  학교 | 카페 | 치킨 | 피자 | 라면 | 맥주 | 생일 | 선물 | 여행 | 비행기 | 기차 | 지하철 | 버스 | 날씨 | 비
  눈 | 영화 | 드라마 | 노래 | 게임 | 운동 | 산책 | 병원 | 약속 | 휴가 | 퇴근 | 출근 | 야근 | 월급 | 주문
  메뉴 | 예약 | 자리 | 문제 | 질문 | 답장 | 소식 | 뉴스 | 준비 | 마감 | 보고서 | 예산 | 회의실 | 강아지 | 고양이
  택시 | 주차 | 숙제 | 시험 | 수업 | 과제 | 사무실 | 노트북 | 충전기 | 비밀번호 | 계정 | 화면 | 디자인 | 기획 | 일
  회의록 | 견적 | 계약 | 출장 | 면접 | 이사 | 청소 | 빨래 | 장보기 | 마트 | 편의점 | 공원 | 바다 | 캠핑 | 콘서트
`);
/** Only in chats built with `elsewhere`: a noun none of the requesters' chats ever uses. */
const KO_NOUNS_ELSEWHERE = [...KO_NOUNS.slice(0, 45), QUERY_ELSEWHERE, ...KO_NOUNS.slice(45, 80), '택배 기사님', ...KO_NOUNS.slice(80)];

const KO_PREDICATES = list(`
  했어요 | 할게요 | 해요 | 했어 | 하자 | 갈게 | 가요 | 왔어요 | 있어요 | 없어요 | 좋아요 | 괜찮아요
  알겠습니다 | 확인했습니다 | 부탁드립니다 | 감사합니다 | 고마워 | 미안해 | 죄송합니다 | 끝났어요 | 늦을 것 같아요
  어때요? | 어디야? | 뭐해? | 언제 돼요? | 됐어요 | 보내드렸습니다 | 공유해 주세요 | 올렸어요 | 먹을래? | 가능할까요?
  봤어? | 어떻게 해? | 할 수 있어요 | 시작할게요 | 잠깐만요 | 기다릴게 | 도착했어 | 출발했어요 | 몰라 | 맞아요
`);
const KO_ADVERBS = list('진짜 | 너무 | 좀 | 빨리 | 같이 | 다시 | 먼저 | 아직 | 벌써 | 혹시 | 그럼 | 근데 | 일단 | 나중에 | 지금 바로 | 방금');
const KO_ALONE = list(`
  ㅋㅋ | ㅋㅋㅋ | ㅋㅋㅋㅋㅋ | ㅎㅎ | 네 | 넵 | 응 | ㅇㅇ | ㅠㅠ | 아니 | 헐 | 대박 | 진짜? | 오케이 | 와
  수고하셨습니다 | 화이팅 | 안녕하세요 | 안녕 | 좋은 아침입니다 | 잘 자 | 감사합니다 | 넵 알겠습니다 | 고생했어 | 축하해
`);
/** Particles after a final consonant / after a vowel. */
const KO_PARTICLES: readonly (readonly [string, string])[] = [
  ['은', '는'], ['이', '가'], ['을', '를'], ['에', '에'], ['에서', '에서'], ['도', '도'], ['만', '만'],
  ['까지', '까지'], ['부터', '부터'], ['이랑', '랑'], ['으로', '로'],
];
const EMOJI = list('😂 | 👍 | 🙏 | ❤️ | 🎉 | 😅 | 😭 | 🔥 | 👀 | 😊');

const koNouns = new Zipf(KO_NOUNS, 1.0, 4);
const koNounsElsewhere = new Zipf(KO_NOUNS_ELSEWHERE, 1.0, 4);
const koPredicates = new Zipf(KO_PREDICATES, 0.9);
const koAlone = new Zipf(KO_ALONE, 0.9);

function hasBatchim(word: string): boolean {
  const c = word.codePointAt(word.length - 1)!;
  return c >= 0xac00 && c <= 0xd7a3 && (c - 0xac00) % 28 !== 0;
}

function koSentence(r: Prng, elsewhere: boolean, english: boolean): string {
  const parts: string[] = [];
  if (r.chance(0.3)) parts.push(r.pick(KO_ADVERBS));
  const nouns = r.int(1, 3);
  for (let i = 0; i < nouns; i++) {
    if (english && r.chance(0.35)) {
      parts.push(enWords.draw(r));
      continue;
    }
    const noun = (elsewhere ? koNounsElsewhere : koNouns).draw(r);
    const particle = r.chance(0.6) ? r.pick(KO_PARTICLES)[hasBatchim(noun) ? 0 : 1] : '';
    parts.push(noun + particle);
  }
  parts.push(koPredicates.draw(r));
  return parts.join(' ');
}

function korean(r: Prng, elsewhere: boolean, english: boolean): string {
  if (r.chance(0.22)) return koAlone.draw(r) + (r.chance(0.2) ? ` ${r.pick(EMOJI)}` : '');
  const sentences = r.chance(0.12) ? r.int(2, 5) : 1;
  const out: string[] = [];
  for (let i = 0; i < sentences; i++) out.push(koSentence(r, elsewhere, english));
  let text = out.join(r.chance(0.5) ? ' ' : '. ');
  if (r.chance(0.15)) text += ` ${koAlone.draw(r)}`;
  if (r.chance(0.08)) text += ` ${r.pick(EMOJI)}`;
  return text;
}

// ---- Japanese --------------------------------------------------------------------------------

const JA_NOUNS = list(`
  今日 | 明日 | 今 | 昨日 | 会議 | 資料 | 時間 | 予定 | ランチ | 写真 | 来週 | 今週 | 週末 | 打ち合わせ | 確認
  メール | 電話 | 東京 | 駅 | 電車 | プロジェクト | テスト | バグ | 修正 | リリース | サーバー | 部長 | 先輩 | 友達
  家族 | 会社 | 家 | カフェ | コーヒー | ラーメン | 寿司 | 誕生日 | 旅行 | 天気 | 雨 | 映画 | 仕事 | 休み | 残業
  大阪 | 京都 | 新幹線 | 飲み会 | 締め切り | 見積もり | 契約 | 出張 | 面接 | 引っ越し | 買い物 | コンビニ | 公園
`);
const JA_PARTICLES = list('は | が | を | に | で | も | の | まで | から | と');
const JA_PREDICATES = list(`
  です | でした | します | しました | お願いします | よろしくお願いします | ありがとうございます | すみません
  大丈夫です | 了解です | 行きます | 遅れます | 終わりました | 送りました | 見ました | いいね | どうですか？ | 何時？
  どこ？ | できますか？ | 楽しみ！ | 頑張って | お疲れ様です | 少し遅れます | 今向かってます | 確認します
`);
const JA_ALONE = list('はい | うん | 了解 | おはよう | おやすみ | ありがとう | www | 笑 | なるほど | マジで？ | すごい | お疲れ様です | 了解しました');
const jaNouns = new Zipf(JA_NOUNS, 1.0, 3);
const jaPredicates = new Zipf(JA_PREDICATES, 0.9);

function japanese(r: Prng, english: boolean): string {
  if (r.chance(0.2)) return r.pick(JA_ALONE) + (r.chance(0.2) ? r.pick(EMOJI) : '');
  const sentences = r.chance(0.08) ? r.int(2, 4) : 1;
  let text = '';
  for (let s = 0; s < sentences; s++) {
    const nouns = r.int(1, 3);
    for (let i = 0; i < nouns; i++) {
      text += english && r.chance(0.3) ? ` ${enWords.draw(r)} ` : jaNouns.draw(r);
      text += r.pick(JA_PARTICLES);
    }
    text += jaPredicates.draw(r);
    if (!/[？！]$/.test(text)) text += r.chance(0.6) ? '。' : r.chance(0.5) ? '！' : '';
  }
  return text.trim();
}

// ---- English ---------------------------------------------------------------------------------

const EN_WORDS = list(`
  ok | the | meeting | lunch | today | tomorrow | PR | deploy | build | review | call | coffee | weekend | plan | thanks
  release | bug | fix | merge | design | doc | tests | server | standup | slack | zoom | link | ETA | QA | staging
  customer | budget | deadline | report | slides | demo | office | train | flight | dinner | pizza | birthday | movie
`);
const EN_PHRASES = list(`
  ok | sounds good | see you at 5 | can you review my PR? | lunch? | running late, sorry | thanks! | lol | on my way
  brb | got it | let me check | no worries | good morning | is the build green? | deploying now | nice work
  who's joining the call? | where are the slides? | happy birthday! | see you tomorrow | can we move it to 3?
  I'll send the doc tonight | the tests are flaky again | coffee after standup? | great, thanks | let's ship it
`);
const enWords = new Zipf(EN_WORDS, 0.9);
const enPhrases = new Zipf(EN_PHRASES, 0.8);

function english(r: Prng): string {
  const n = r.chance(0.1) ? r.int(2, 4) : 1;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    if (r.chance(0.6)) {
      out.push(enPhrases.draw(r));
    } else {
      const words: string[] = [];
      for (let w = r.int(2, 9); w > 0; w--) words.push(enWords.draw(r));
      const s = words.join(' ');
      out.push(s[0]!.toUpperCase() + s.slice(1) + (r.chance(0.3) ? '?' : r.chance(0.5) ? '.' : ''));
    }
  }
  return out.join(' ') + (r.chance(0.08) ? ` ${r.pick(EMOJI)}` : '');
}

// ---- chats -----------------------------------------------------------------------------------

export type Language = 'ko' | 'ja' | 'en' | 'ko+en';

/** A chat's language: Korean 55 %, Korean with English words 15 %, Japanese 15 %, English 15 %. */
export function chatLanguage(r: Prng): Language {
  const x = r.next();
  return x < 0.55 ? 'ko' : x < 0.7 ? 'ko+en' : x < 0.85 ? 'ja' : 'en';
}

/** One chat message's text in `language`; `elsewhere` lets Korean use QUERY_ELSEWHERE. */
export function chatText(r: Prng, language: Language, elsewhere: boolean): string {
  switch (language) {
    case 'ko':
      return korean(r, elsewhere, false);
    case 'ko+en':
      return korean(r, elsewhere, true);
    case 'ja':
      // A Japanese chat of Korean users now and then writes Korean (and the other way round).
      return r.chance(0.05) ? korean(r, elsewhere, false) : japanese(r, r.chance(0.15));
    case 'en':
      return r.chance(0.05) ? korean(r, elsewhere, false) : english(r);
  }
}
